"""Re-opens an existing .db file with prometheus_client's own MmapedDict (as a new
process with the same pid would) and sets every entry to a value, in place through mmap.

Usage: mmap_write.py FILE VALUE
"""
import sys

from prometheus_client.mmap_dict import MmapedDict

path, value = sys.argv[1], float(sys.argv[2])
d = MmapedDict(path)
for key, _, ts, _ in list(d._read_all_values()):
    d.write_value(key, value, ts)
d.close()
