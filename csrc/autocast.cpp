// The one libtorch setting tch 0.24 does not expose: the CUDA autocast dtype.
// tch::autocast enables autocast, which defaults to float16; bone-age's
// `train.autocast = true` first selects bfloat16 here.
#include <ATen/autocast_mode.h>

extern "C" void bone_age_set_cuda_autocast_bf16(int bf16) {
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
}

extern "C" int bone_age_cuda_autocast_is_bf16() {
  return at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16;
}
