"""The `train` subcommand: train (or fine-tune) one THA network on a dataset folder the builder made.

torch is imported only when the command runs, so `--help` stays instant.
"""

from ...commands import CommandError

EPILOG = """\
THA1, in the write-up's order (each run's weights.safetensors holds every THA1 network, the
trained one replaced, so the next run takes it as --base-weights and `pose --weights` uses it):
  train DATA runs/fm  --family tha1 --network face_morpher --epochs 6 --batch-size 25
  train DATA runs/rot --family tha1 --network two_algo_face_rotator --base-weights runs/fm/weights.safetensors
  train DATA runs/rot-p --family tha1 --network two_algo_face_rotator --loss perceptual \\
        --vgg16-weights vgg16.pth --init-from runs/rot/checkpoints/step-000060000.json --batch-size 8 \\
        --base-weights runs/fm/weights.safetensors
  train DATA runs/comb --family tha1 --network combiner --base-weights runs/rot-p/weights.safetensors
THA3 fine-tuning from the official weights (the other networks frozen):
  train DATA3 runs/t3fm --family tha3 --network face_morpher --base-weights tha3 --steps 2000

Run the same command again to resume from the newest checkpoint. Several GPUs or machines:
  torchrun --nproc-per-node 4 cli.py train ... --device cuda
  (SLURM: srun torchrun --nnodes $SLURM_NNODES --nproc-per-node 4 --rdzv-backend c10d
   --rdzv-endpoint $MASTER_ADDR:29500 cli.py train ...); on CPUs the same runs over gloo.
"""


def add_subcommands(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a THA network (THA1) or fine-tune THA3 on a dataset the builder rendered",
        description="Train one network of a THA family on a dataset folder made by render-dataset "
        "(its train split; validation on its validation split), with Adam (lr 1e-4, betas 0.5, 0.999) "
        "and the L1 loss, or the perceptual loss from an L1 snapshot. Writes OUT/weights.safetensors "
        "(loaded by pose --weights), OUT/log.csv, OUT/grids/*.png and OUT/checkpoints/.",
        epilog=EPILOG,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", help="the dataset folder (dataset.json, manifest.jsonl, images/)")
    parser.add_argument("out", help="the run folder (created; reused to resume)")
    parser.add_argument("--family", default="tha1", choices=("tha1", "tha3"), help="network family (default tha1)")
    parser.add_argument("--network", default="face_morpher",
                        help="face_morpher, two_algo_face_rotator or combiner (THA1); face_morpher or "
                        "two_algo_face_body_rotator (THA3) (default face_morpher)")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (default: --epochs of the data)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training split (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per step, over all processes (default 8)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="float32, or bfloat16/float16 autocast (float16 on CUDA only) (default float32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order (default 0)")
    parser.add_argument("--image-size", type=int, default=0,
                        help="train THA1 at this square size (the images are resized; default: the dataset's)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes, at most the CPUs (default 0: in the trainer)")
    parser.add_argument("--validate-every", type=int, default=0, help="validate every N steps (default: start and end)")
    parser.add_argument("--validation-limit", type=int, default=0, help="validate on the first N examples (default all)")
    parser.add_argument("--hold-out", type=int, default=0,
                        help="validate on each training model's last N poses (held out of training) instead "
                        "of the validation split: for a studio's own few characters")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint every N steps (default: the end)")
    parser.add_argument("--base-weights", default="",
                        help="weights of the family's other networks (a .safetensors or folder; 'tha3' for the "
                        "official THA3 files): the frozen ones, and the start for THA3 fine-tuning")
    parser.add_argument("--init-from", default="", help="start the network from a checkpoint .json or a .safetensors")
    parser.add_argument("--loss", default="l1", choices=("l1", "perceptual"), help="l1 or perceptual (default l1)")
    parser.add_argument("--vgg16-weights", default="", help="VGG16 state_dict file for the perceptual loss")
    parser.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of the perceptual term (default 1)")
    parser.add_argument("--on-bad-image", default="fatal", choices=("fatal", "skip"),
                        help="a missing or corrupt image stops the run (fatal) or its example is skipped")
    parser.add_argument("--flip", action="store_true", help="augment: mirror half the examples (left/right swapped)")
    parser.add_argument("--jitter", type=float, default=0.0, help="augment: RGB gain/offset jitter, e.g. 0.05")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resumes)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--log-examples", action="store_true", help="write examples.csv: each step's examples")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)


def run_train(args):
    from .trainer import TrainOptions, train

    options = TrainOptions(
        dataset=args.dataset, out=args.out, family=args.family, network=args.network, steps=args.steps,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
        precision=args.precision, image_size=args.image_size, workers=args.workers,
        validate_every=args.validate_every, validation_limit=args.validation_limit, hold_out=args.hold_out,
        checkpoint_every=args.checkpoint_every, base_weights=args.base_weights, init_from=args.init_from,
        loss=args.loss, vgg16_weights=args.vgg16_weights, perceptual_weight=args.perceptual_weight,
        on_bad_image=args.on_bad_image, flip=args.flip, jitter=args.jitter, deterministic=args.deterministic,
        threads=args.threads, log_examples=args.log_examples, show_progress=not args.no_progress,
    )
    try:
        summary = train(options)
    except KeyError as error:  # an unknown network name
        raise CommandError(error.args[0]) from None
    if summary.last_validation:
        v = summary.last_validation
        print(f"validation RMSE {v.get('val_rmse', float('nan')):.5f} SSIM {v.get('val_ssim', float('nan')):.4f} "
              f"(identity {v.get('identity_rmse', float('nan')):.5f} / {v.get('identity_ssim', float('nan')):.4f})")
    print(f"{summary.weights}: {options.family} weights after {summary.steps} steps; log {summary.log}")
    return 0
