// Adam/AdamW's step and gradient-norm clipping, op for op as PyTorch 2.11 does them on the
// CPU (torch/optim/adam.py `_single_tensor_adam`, torch/nn/utils/clip_grad.py), so our
// training steps round as torch.optim's do. tch 0.24 has no `value` argument on addcmul_ /
// addcdiv_, and composing them differently moves weights by an ulp per step; Adam divides
// each gradient by its own size, so over a few steps an ulp grows into a visible difference
// on weights whose gradient is near zero by cancellation (the biases before BatchNorm).
// Tensors are tch handles (libtch's `torch::Tensor*`).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <vector>

extern "C" void bone_age_adam_step(at::Tensor *param, at::Tensor *exp_avg,
                                   at::Tensor *exp_avg_sq, int64_t step, double lr,
                                   double beta1, double beta2, double eps,
                                   double weight_decay, int decoupled) {
  c10::NoGradGuard no_grad;
  at::Tensor grad = param->grad();
  if (!grad.defined()) {
    return;
  }
  if (weight_decay != 0) {
    if (decoupled) {
      param->mul_(1 - lr * weight_decay);
    } else {
      grad = grad.add(*param, weight_decay);
    }
  }
  exp_avg->lerp_(grad, 1 - beta1);
  exp_avg_sq->mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  at::Tensor denom = (exp_avg_sq->sqrt() / bias_correction2_sqrt).add_(eps);
  param->addcdiv_(*exp_avg, denom, -step_size);
}

// Returns the total norm before clipping.
extern "C" double bone_age_clip_grad_norm(at::Tensor **params, int64_t n, double max_norm) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads, norms;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor g = params[i]->grad();
    if (g.defined()) {
      grads.push_back(g);
      norms.push_back(at::linalg_vector_norm(g, 2));
    }
  }
  if (grads.empty()) {
    return 0.0;
  }
  at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
  // Python's `max_norm / (total + 1e-6)` is `reciprocal(total + 1e-6) * max_norm`.
  at::Tensor coef = at::clamp((total + 1e-6).reciprocal() * max_norm, c10::nullopt, 1.0);
  for (auto &g : grads) {
    g.mul_(coef);
  }
  return total.item<double>();
}
