"""Batch inference on Dask beside the single-process path: images/s and Dask's overhead per image.

The same network and generated images run three ways: in this process without Dask (what
`cnnc run --input imgs/ --batch B --output preds.jsonl` does: read, run, build rows), and with
`cnnc.predict_files` on the embedded LocalCluster (`local_cluster`: 1 and 2 worker processes, one thread each, as
Dask's nanny sets OMP_NUM_THREADS=1), writing a Parquet folder. The cluster is started, and one
warm-up call made (the workers import cnnc, NumPy, Pillow, pyarrow), before the clock starts
(both printed apart); the Dask time includes shipping the network,
installing it on every worker, reading the images on the workers and committing the partitions.
The baseline runs with --threads BLAS threads (1 by default, like one worker).

    python benchmarks/bench_dask.py --images 400 --size 64 --batch 16
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default=str(ROOT / "examples" / "resnet18.cnn"))
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=64, help="input height and width (default: 64)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--partition-size", type=int, default=64)
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to time (default: 1,2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of the baseline (default: 1)")
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)  # before numpy is imported

    import numpy as np
    from PIL import Image

    import cnnc
    from cnnc.runtime.batches import RunStats, iter_examples, run_batches
    from cnnc.runtime.distributed import local_cluster, predict_files
    from cnnc.runtime.results import ResultWriter, prediction_rows

    net = cnnc.compile(args.network, input_shapes={"image": ("N", 3, args.size, args.size)})
    shape = net.graph.shape(net.input_names[0])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images):  # photo-like sizes: every image is decoded and resized
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")
        files = sorted(str(p) for p in folder.iterdir())

        start = time.perf_counter()
        stats = RunStats()
        with ResultWriter(Path(tmp) / "single.jsonl") as writer:
            run_batches(net.run, net.input_names[0], shape, iter_examples(files, shape, stats, print), args.batch,
                        lambda i, s, o: writer.write(prediction_rows(net.graph, o, s, i)), stats)
        single = time.perf_counter() - start
        rows = [("1 process, no Dask", f"{args.threads} BLAS thread{'s' if args.threads != 1 else ''}", single)]

        import distributed

        for count in (int(c) for c in args.workers.split(",")):
            begun = time.perf_counter()
            with local_cluster(count) as cluster, distributed.Client(cluster) as client:
                startup = time.perf_counter() - begun
                start = time.perf_counter()  # warm-up: the workers import cnnc, NumPy, Pillow, pyarrow
                predict_files(net, files[:args.batch], Path(tmp) / f"warm{count}.parquet", batch_size=args.batch,
                              client=client)
                warm = time.perf_counter() - start
                start = time.perf_counter()
                summary = predict_files(net, files, Path(tmp) / f"dask{count}.parquet", batch_size=args.batch,
                                        client=client, partition_size=args.partition_size)
                seconds = time.perf_counter() - start
                assert summary.good == args.images, summary
            rows.append((f"Dask, {count} worker{'s' if count != 1 else ''}",
                         f"1 thread each; cluster start {startup:.1f} s, first call {warm:.1f} s", seconds))

    print(f"{Path(args.network).name} at {args.size}x{args.size}, {args.images} JPEG images 128x96, batch "
          f"{args.batch}, partitions of {args.partition_size}; {os.cpu_count()} CPUs")
    print("| run | threads | seconds | images/s | ms/image | Dask overhead ms/image |")
    print("|---|---|---|---|---|---|")
    per_image = single / args.images
    for name, note, seconds in rows:
        count = 1 if name.startswith("1 ") else int(name.split()[1])
        overhead = "" if name.startswith("1 ") else f"{(seconds * count / args.images - per_image) * 1e3:+.2f}"
        print(f"| {name} | {note} | {seconds:.2f} | {args.images / seconds:.1f} | "
              f"{seconds / args.images * 1e3:.2f} | {overhead} |")
    print("Dask overhead: worker-seconds per image beyond the baseline's seconds per image "
          "(wall time × workers / images − baseline time / images).")


if __name__ == "__main__":
    main()
