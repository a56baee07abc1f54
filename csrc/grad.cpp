// Gradients set to none, as torch.optim's zero_grad() does by default (set_to_none=True):
// the next backward then hands each parameter its freshly computed gradient instead of
// adding it into a zeroed buffer, which saves a pass over every weight per step. tch 0.24
// only zeroes gradients in place. `t` is a tch tensor handle (libtch's `torch::Tensor*`).
#include <ATen/ATen.h>

extern "C" void bone_age_reset_grad(at::Tensor *t) {
  t->mutable_grad().reset();
}
