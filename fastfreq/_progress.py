"""Progress bars when tqdm is installed (it is a dependency, but the GPU
check runs on interpreters that may lack it); plain iteration otherwise."""


def progress(iterable, **kwargs):
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    kwargs.setdefault("disable", None)  # off when not writing to a terminal
    return tqdm(iterable, **kwargs)
