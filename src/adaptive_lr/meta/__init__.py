"""Learned LR controllers trained across runs (issue 15, part 3): whole-run rewards (`rewards`), the meta-training
loop that saves a frozen policy with its provenance (`train`), and the leave-one-family-out transfer evaluation
(`transfer`). Built from `configs/meta_train.yaml` and its groups under `configs/meta/`; `adaptive-lr meta-train`."""
