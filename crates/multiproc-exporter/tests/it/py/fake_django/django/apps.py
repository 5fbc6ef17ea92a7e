class _Apps:
    ready = False


apps = _Apps()
