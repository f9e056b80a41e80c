from .cli import main

# Guarded: worker processes that multiprocessing spawns (Dask's local cluster) import the main
# module of `python -m estbench` again, and must not run the command a second time.
if __name__ == "__main__":
    raise SystemExit(main())
