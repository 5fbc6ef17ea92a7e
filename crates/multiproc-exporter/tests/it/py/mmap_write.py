"""Re-opens an existing .db file with prometheus_client's own MmapedDict (as a new
process with the same pid would) and sets every entry to a value, in place through mmap.

Usage: mmap_write.py FILE VALUE [--wait]

With --wait it writes VALUE, prints `ready`, and writes VALUE + 1 when a line arrives on
stdin: a writer whose last write (through a page it has already written, so the file's
ctime does not change) comes after a reader's last look.
"""
import sys

from prometheus_client.mmap_dict import MmapedDict

path, value = sys.argv[1], float(sys.argv[2])
d = MmapedDict(path)


def write(v):
    for key, _, ts, _ in list(d._read_all_values()):
        d.write_value(key, v, ts)


if '--wait' in sys.argv[3:]:
    write(value)
    print('ready', flush=True)
    sys.stdin.readline()
    value += 1
write(value)
d.close()
