"""Building blocks of the trainer (`guim.train`): the stage plan, optimisers and schedule, and
torch.distributed (devices, process groups, batch shares)."""
