import json
import os


class _Field:
    def __init__(self, *args, default=None, **kwargs):
        self.default = default


CharField = PositiveSmallIntegerField = _Field


class _Manager:
    def __init__(self, model):
        self.model = model

    def all(self):
        rows = json.loads(os.environ.get("SLAAPP_ROWS", "[]"))
        out = []
        for row in rows:
            obj = self.model.__new__(self.model)
            for name, value in vars(self.model).items():
                if isinstance(value, _Field):
                    setattr(obj, name, row.get(name, value.default))
            out.append(obj)
        return out


class _ModelBase(type):
    def __init__(cls, name, bases, ns):
        super().__init__(name, bases, ns)
        if bases:
            cls.objects = _Manager(cls)


class Model(metaclass=_ModelBase):
    pass
