"""bench/lockstep_torch.py - PyTorch 1.13's side of bench/lockstep.lua: the same ops on the
same shapes, one batch per request. Reads an op name per line from the FIFO argv[1] and
answers on the FIFO argv[2] with the CPU seconds per call of one batch (`warm` untimed
calls, then `batch` timed calls); "quit" ends it. One thread. A development tool (Debian's
python3-torch), never a dependency of the library.

usage: /usr/bin/python3 bench/lockstep_torch.py CMD_FIFO RES_FIFO batch warm
"""
import sys
import time

import torch


def main():
    cmd_path, res_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    warm = int(sys.argv[4])
    # the FIFOs first (the driver blocks until both ends are open): whatever fails later
    # closes them, and the driver sees the end of its answers instead of waiting
    with open(cmd_path) as cmd, open(res_path, "w") as res:
        torch.set_num_threads(1)
        torch.manual_seed(1)
        a, b = torch.rand(1024, 1024), torch.rand(1024)  # the broadcasting add
        c = a.clone()
        x = torch.rand(4096, 1024)  # the reduction
        ops = {
            "add": lambda: a + b,
            "add_": lambda: c.add_(b),
            "sum2": lambda: x.sum(1),
        }
        for line in cmd:
            name = line.strip()
            if name == "quit":
                break
            f = ops[name]
            for _ in range(warm):
                f()
            t0 = time.process_time()
            for _ in range(batch):
                f()
            res.write("%.9f\n" % ((time.process_time() - t0) / batch))
            res.flush()


if __name__ == "__main__":
    main()
