"""core.tree: one naming of parameter paths, regex selection and shape checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from core import tree


@struct.dataclass
class _State:
  step: jax.Array
  params: dict


def _params():
  return {
    "encoder": {
      "layer_0": {"attention": {"query": {"kernel": np.zeros((4, 6)), "bias": np.zeros(6)}}},
      "layers": [np.zeros(3), np.zeros((2, 2))],
    },
    "head": {"kernel": np.zeros((6, 2))},
  }


def test_path_str_names_dict_keys_attributes_and_indices():
  state = _State(step=jnp.zeros(()), params=_params())
  names = [name for name, _ in tree.named_leaves(state)]
  assert names == [
    "step",
    "params/encoder/layer_0/attention/query/bias",
    "params/encoder/layer_0/attention/query/kernel",
    "params/encoder/layers/0",
    "params/encoder/layers/1",
    "params/head/kernel",
  ]
  (path, _), *_ = jax.tree_util.tree_leaves_with_path({"a": [{"b": 1}]})
  assert tree.path_str(path) == "a/0/b"


def test_map_with_path_str_passes_names_and_the_other_trees_leaves():
  a = {"x": 1.0, "y": {"z": 2.0}}
  b = {"x": 10.0, "y": {"z": 20.0}}
  out = tree.map_with_path_str(lambda name, u, v: f"{name}={u + v}", a, b)
  assert out == {"x": "x=11.0", "y": {"z": "y/z=22.0"}}


def test_select_full_matches_any_pattern():
  mask = tree.select(_params(), [r".*/query/kernel", r"head/.*"])
  assert jax.tree.leaves(mask) == [False, True, False, False, True]
  # Full match, not search: 'kernel' alone selects nothing; one string is one pattern, not its characters.
  assert not any(jax.tree.leaves(tree.select(_params(), "kernel")))
  assert jax.tree.leaves(tree.select(_params(), "head/kernel")) == [False, False, False, False, True]


def test_check_shapes_accepts_equal_trees_of_arrays_and_shape_structs():
  params = _params()
  tree.check_shapes(jax.eval_shape(lambda: params), params, "params")


@pytest.mark.parametrize(
  "edit, message",
  [
    (lambda p: p["head"].pop("kernel"), r"^ckpt: has no entry head/kernel \(the model expects shape \(6, 2\)\)$"),
    (lambda p: p["head"].update(bias=np.zeros(2)), r"^ckpt: unexpected entry head/bias "),
    (
      lambda p: p["encoder"]["layers"].__setitem__(1, np.zeros((2, 3))),
      r"^ckpt: encoder/layers/1 has shape \(2, 3\), the model expects \(2, 2\)$",
    ),
  ],
)
def test_check_shapes_names_the_first_bad_path_in_one_line(edit, message):
  actual = _params()
  edit(actual)
  with pytest.raises(tree.ShapeError, match=message) as info:
    tree.check_shapes(_params(), actual, "ckpt")
  assert "\n" not in str(info.value)
  assert isinstance(info.value, ValueError)


def test_check_shapes_reads_any_leaf_with_a_shape():
  @dataclasses.dataclass(frozen=True)
  class Metadata:  # like orbax's ArrayMetadata: not an array, but has .shape
    shape: tuple[int, ...]

  saved = {"head": {"kernel": Metadata((6, 3))}}
  with pytest.raises(tree.ShapeError, match=r"head/kernel has shape \(6, 3\), the model expects \(6, 2\)"):
    tree.check_shapes({"head": {"kernel": np.zeros((6, 2))}}, saved, "ckpt")
