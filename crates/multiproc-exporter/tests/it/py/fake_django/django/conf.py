import importlib
import os


class _Settings:
    def _load(self):
        module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
        for k in dir(module):
            if k.isupper():
                setattr(self, k, getattr(module, k))


settings = _Settings()
