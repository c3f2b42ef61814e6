"""Meshes, logical sharding rules and the sharded (jitted, explicit in/out shardings) steps.

One code path for 1 CPU device (a 1x1x1 mesh), 8 fake CPU devices, one GPU or a TPU pod:

    mesh = make_mesh(data=2, tensor=4)                  # or mesh_from_spec("2,1,4"), mesh_from_config(config)
    model = mmneuron_jax.load_on_mesh(path, mesh)       # each device reads only its slices
    # (= load_hf(path, shardings=shardings_for_config(read_config(path), mesh)).on_mesh(mesh))
    out = model.apply(model.params, batch, masks=..., probe=..., lens=...)   # jit with in/out shardings
    tokens = model.generate(model.params, batch, max_new_tokens=32)
    g = analysis.importance.grad_importance(model, model.params, batch, answer_mask)
    step = analysis.stats.make_step(model, num_groups)  # sharded when the model is on a mesh

A leaf package: it imports nothing else from mmneuron_jax (model loading for a config lives
above it, in `mmneuron_jax.loading`). One module per concept, every name re-exported here
(`sharding.X`): `mesh` (make_mesh, mesh_from_spec / _config, axis_size), `rules` (logical axes
-> param PartitionSpecs), `placement` (params and batches onto the mesh, results back to the
host), `steps` (`jit_step`: the one jit path every model step takes; `jax.jit` without a mesh).

Mesh axes: `data` (batch), `fsdp` (batch and parameter in-dims), `tensor` (vocab, heads, MLP
width). Params follow logical axes: `PARAM_AXES` maps a regex on the param path
('llm/layers/mlp/gate/kernel') to logical names of the param's *trailing* dims ('embed', 'mlp'),
`LOGICAL_AXES` maps logical names to mesh axes; `DEFAULT_RULES = logical_rules()` is the
resolved (regex, mesh spec) table every function takes as `rules`. Leading dims (the scanned
layer axis `L`) stay replicated, and any dim not divisible by its mesh axes' size falls back to
replicated, so every param of every family gets a valid sharding (unknown paths: replicated).

Sharding never changes what is computed (jit has global semantics); it changes where. Results
equal the single-device ones up to float reduction order (fp32: ~1e-6 relative).

Inputs: every batch array (input_ids [B, T], position_ids [3, B, T], pixel_values [N, ...],
probe arrays, lens positions) is split on its batch axis over LOGICAL_AXES['batch'] =
('data', 'fsdp') when divisible, else over 'data' or 'fsdp' alone, else replicated; masks are
replicated. Outputs: probe results and logit-lens readouts (small) come back replicated; logits
[B, T, V], captured neurons [L, B, T, F] and generated tokens stay split on their batch axis
(`Model.forward_step(replicated_outputs=True)` replicates everything). On a mesh spanning
several processes every host passes the same global batch; steps return replicated results as host arrays and
`to_host` gathers the rest; `mmneuron_jax.distributed` has the per-host alternative for
statistics (a per-host mesh, `host_shard`, `reduce_stats_across_hosts`).
"""
from mmneuron_jax.sharding.mesh import AXES, axis_size, make_mesh, mesh_from_config, mesh_from_spec, useful_axes
from mmneuron_jax.sharding.rules import (DEFAULT_RULES, LOGICAL_AXES, PARAM_AXES, describe, logical_rules,
                                         param_shardings, param_specs, path_str, spec_for)
from mmneuron_jax.sharding.placement import (BATCH_AXES, BATCH_AXIS_FROM_END, batch_sharding, batch_sharding_for,
                                             batch_shardings, place_params, put, replicated, replicated_to_host,
                                             shard_batch, spans_processes, to_host)
from mmneuron_jax.sharding.steps import KINDS, ShardedStep, jit_step

__all__ = [
    "AXES", "axis_size", "make_mesh", "mesh_from_config", "mesh_from_spec", "useful_axes",
    "DEFAULT_RULES", "LOGICAL_AXES", "PARAM_AXES", "describe", "logical_rules", "param_shardings", "param_specs",
    "path_str", "spec_for",
    "BATCH_AXES", "BATCH_AXIS_FROM_END", "batch_sharding", "batch_sharding_for", "batch_shardings", "place_params",
    "put", "replicated", "replicated_to_host", "shard_batch", "spans_processes", "to_host",
    "KINDS", "ShardedStep", "jit_step",
]
