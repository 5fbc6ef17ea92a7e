"""Oracle for the exposition crate's tests: the real prometheus_client (0.26.0).

    oracle.py emit DIR    writes families of every type, with odd floats, escapes, UTF-8,
                          timestamps and exemplars, as Python's encoders write them:
                          DIR/text.txt, DIR/om.txt (default escaping), DIR/text_utf8.txt,
                          DIR/om_utf8.txt (escaping=allow-utf-8)
    oracle.py parse FORMAT FILE
                          parses FILE with Python's parser for FORMAT (text|om) and prints
                          the families as JSON (values as repr strings)
       oracle.py floats          stdin: f64 bits in hex per line; stdout: repr and
                                 floatToGoString per line
"""
import json
import math
import sys

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
    HistogramMetricFamily, InfoMetricFamily, Metric, StateSetMetricFamily,
    SummaryMetricFamily, UnknownMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client import parser as text_parser
from prometheus_client.samples import Exemplar

HELP = 'help with a backslash \\ a newline \n a "quote" and ü'
ODD = [1e-05, 1e+22, 123456789.0, -0.0, 0.0, 5e-324, 1e16, 0.1 + 0.2, 1234567.0,
       -1234567.0, 1.7976931348623157e308, 999999.0, 12345678901.0]
VALUE = 'back\\slash new\nline "quoted" ü ☃'


class Families:
    def collect(self):
        c = CounterMetricFamily('requests', HELP, labels=['path', 'odd'])
        for i, v in enumerate(ODD):
            if v >= 0 and not math.copysign(1, v) < 0:
                c.add_metric(['/p', str(i)], v, created=1700000000.25)
        c.add_metric([VALUE, 'x'], 7.0)
        yield c
        g = GaugeMetricFamily('temperature_celsius', 'a gauge', labels=['i'], unit='celsius')
        for i, v in enumerate(ODD + [math.nan, math.inf, -math.inf]):
            g.add_metric([str(i)], v)
        g.add_metric(['ts'], 3.0, timestamp=1700000000.123)
        yield g
        h = HistogramMetricFamily('latency_seconds', 'latency', labels=['route'], unit='seconds')
        h.add_metric(['/a'], [('0.005', 1.0), ('0.1', 3.0), ('1e+06', 4.0), ('+Inf', 5.0)],
                     sum_value=2.5)
        yield h
        hx = Metric('with_exemplar', 'a histogram with an exemplar', 'histogram')
        hx.add_sample('with_exemplar_bucket', {'le': '1.0'}, 1.0,
                      exemplar=Exemplar({'trace_id': 'abc'}, 0.5, 1700000000.5))
        hx.add_sample('with_exemplar_bucket', {'le': '+Inf'}, 2.0,
                      exemplar=Exemplar({'trace_id': 'def', 'span': 'x"y'}, 3.0))
        hx.add_sample('with_exemplar_count', {}, 2.0)
        hx.add_sample('with_exemplar_sum', {}, 3.5)
        hx.add_sample('with_exemplar_created', {}, 1700000000.0)
        yield hx
        gh = GaugeHistogramMetricFamily('queue', 'queue sizes', labels=['q'])
        gh.add_metric(['a'], [('1.0', 2.0), ('+Inf', 3.0)], gsum_value=4.0)
        yield gh
        s = SummaryMetricFamily('rpc', 'rpc times', labels=['m'])
        s.add_metric(['get'], count_value=3, sum_value=1.5)
        s.add_sample('rpc', {'m': 'get', 'quantile': '0.5'}, 0.25)
        s.add_sample('rpc', {'m': 'get', 'quantile': '0.99'}, 1e-05)
        yield s
        yield InfoMetricFamily('build', 'build info', value={'version': '1.2', 'zü': 'ö'})
        ss = StateSetMetricFamily('state', 'a stateset', labels=['x'])
        ss.add_metric(['1'], {'a': True, 'b': False})
        yield ss
        u = UnknownMetricFamily('mystery', 'no type', labels=['k'])
        u.add_metric(['v'], 42.0)
        yield u
        d = GaugeMetricFamily('my.dotted.name', 'utf-8 name', labels=['label.with.dots'])
        d.add_metric(['v'], 1.0)
        yield d
        yield GaugeMetricFamily('empty_help', '')


def emit(d):
    reg = CollectorRegistry()
    reg.register(Families())
    for name, data in [
        ('text.txt', generate_latest(reg)),
        ('om.txt', om_exposition.generate_latest(reg)),
        ('text_utf8.txt', generate_latest(reg, escaping='allow-utf-8')),
        ('om_utf8.txt', om_exposition.generate_latest(reg, escaping='allow-utf-8')),
    ]:
        with open(f'{d}/{name}', 'wb') as f:
            f.write(data)


def parse(fmt, path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    p = om_parser if fmt == 'om' else text_parser
    out = []
    for fam in p.text_string_to_metric_families(text):
        out.append({
            'name': fam.name, 'type': fam.type, 'help': fam.documentation,
            'unit': getattr(fam, 'unit', ''),
            'samples': [[s.name, sorted(s.labels.items()), repr(float(s.value))]
                        for s in fam.samples],
        })
    print(json.dumps(out))


def floats():
    """Per line of stdin (an f64's bits in hex): `repr(x)` and `floatToGoString(x)`."""
    import struct
    from prometheus_client.utils import floatToGoString
    for line in sys.stdin:
        x = struct.unpack('<d', struct.pack('<Q', int(line, 16)))[0]
        print(repr(x), floatToGoString(x))


if __name__ == '__main__':
    if sys.argv[1] == 'emit':
        emit(sys.argv[2])
    elif sys.argv[1] == 'floats':
        floats()
    else:
        parse(sys.argv[2], sys.argv[3])
