"""Run by tests/test_distributed.py under torchrun (two processes): the first updates of an epoch in
float64, once through the trainer's own step and once normalised the way peers do (each process's
mean over its own tokens, averaged across processes by DDP), saved by rank 0 for the test to
compare with one process training on the union of each update's batches.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py CONFIG OUT.pt STEPS
"""
from __future__ import annotations

import copy
import sys

import torch
from torch.nn.parallel import DistributedDataParallel

import cronos
from cronos.data import collate, load_training_data
from cronos.training.distributed import process_group
from cronos.training.trainer import Trainer


def main(config_path: str, out: str, steps: int) -> None:
    config = cronos.load_config(config_path)
    model = cronos.Cronos.from_config(config)  # the same seed in every process: the same initial weights
    data = load_training_data(config.data)
    initial = copy.deepcopy(model.network).double()
    ours = Trainer(copy.deepcopy(initial), model.codec, config, data, None)
    peers = Trainer(copy.deepcopy(initial), model.codec, config, data, None)
    processes = ours.processes
    with process_group(processes, ours.device):
        ours.trained = ours._replicated()
        plan = ours.plan.updates(0)[:steps]
        for update in plan:
            ours._train_step(update)
        replicated = DistributedDataParallel(peers.network)
        for update in plan:
            peers.optimizer.zero_grad(set_to_none=True)
            for indices in update[processes.rank]:
                batch = collate([data.examples[i] for i in indices])
                loss = replicated(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
                (loss.total / loss.tokens / len(update[processes.rank])).backward()
            torch.nn.utils.clip_grad_norm_(peers.network.parameters(), config.training.clip_grad_norm)
            peers.optimizer.step()
        averages = processes.gather([shadow.clone() for shadow in ours.average.shadow])  # training.ema_decay's
        if processes.main:
            torch.save({"ours": ours.network.state_dict(), "peers": peers.network.state_dict(), "averages": averages,
                        "plan": [[[batch.tolist() for batch in share] for share in update] for update in plan]}, out)
        ours.trained = replicated = None  # DistributedDataParallel goes before its process group does


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
