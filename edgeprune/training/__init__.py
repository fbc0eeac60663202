"""Training, fine-tuning and evaluation."""

# the folder where each rank of a distributed training run writes a digest of its final weights (`edgeprune train
# --ddp-debug-dir`): here, so that the CLI's parser names it without loading the training code
DEBUG_ENV = "EDGEPRUNE_DDP_DEBUG_DIR"
