"""Print a temoe checkpoint with h5py, to show that the format is readable outside temoe.

    /usr/bin/python3 tests/reference/read_checkpoint.py RUN_DIR/ckpt-<step>.h5

Prints the root attributes, then every dataset with its dtype and shape, and the config text.
Reading a dataset verifies its Fletcher32 checksum (h5py raises OSError on damage).
"""

import sys

import h5py
import numpy as np


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with h5py.File(sys.argv[1], "r") as f:
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            print(key, value)

        def show(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]  # reads and checks the checksum
                print(name, obj.dtype, obj.shape, "fletcher32" if obj.fletcher32 else "NO CHECKSUM")
                if data.dtype.kind == "f":
                    assert np.all(np.isfinite(data)), name

        f.visititems(show)
        print("config:", f["config"][0].decode().strip().replace("\n", " | "))
        print("metrics:", f["metrics"][0].decode())


if __name__ == "__main__":
    main()
