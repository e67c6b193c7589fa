// The sequential loops of iclr17.functional.entnet.PackedMemoryRecurrence (arXiv:1612.03969 section 2.2, eqs 2-5)
// in C++: the same ATen operations in the same order as the Python loops there, so the results are bit-identical;
// only the Python interpreter's per-operation cost goes (most of a step at the world model's sizes).
// Built on first use by iclr17.functional.entnet_extension (torch.utils.cpp_extension).
#include <torch/extension.h>

#include <vector>

using torch::Tensor;

// The forward loop: fills and returns memories, outputs, pre, prelu_derivative, gates, norms (see entnet.py).
std::vector<Tensor> forward_loop(const Tensor& sentences, const Tensor& key_gate, const Tensor& sentence_term,
                                 const Tensor& slot_term, const Tensor& u_weight, const Tensor& slope,
                                 const Tensor& initial, const std::vector<int64_t>& counts,
                                 const std::vector<int64_t>& offsets, double norm_eps) {
  const int64_t rows_total = sentences.size(0), slots = initial.size(1), dim = initial.size(2);
  Tensor memories = at::empty({rows_total, slots, dim}, initial.options());
  Tensor outputs = at::empty_like(memories);
  Tensor pre = at::empty_like(outputs);
  Tensor prelu_derivative = at::empty_like(outputs);
  Tensor gates = at::empty_like(key_gate);
  Tensor norms = at::empty_like(key_gate).unsqueeze(-1);
  const Tensor u_transposed = u_weight.t();
  const Tensor ones = at::ones_like(slope);
  if (!counts.empty()) memories.narrow(0, 0, counts[0]).copy_(initial.narrow(0, 0, counts[0]));
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t offset = offsets[k], count = counts[k];
    const Tensor h = memories.narrow(0, offset, count);
    Tensor gate = gates.narrow(0, offset, count);
    Tensor gate_column = gate.unsqueeze(-1);
    at::baddbmm_out(gate_column, key_gate.narrow(0, offset, count).unsqueeze(-1), h,
                    sentences.narrow(0, offset, count).unsqueeze(-1));
    gate.sigmoid_();
    Tensor pre_rows = pre.narrow(0, offset, count);
    Tensor pre_k = pre_rows.view({-1, dim});
    at::addmm_out(pre_k, slot_term.narrow(0, 0, count).view({-1, dim}), h.reshape({-1, dim}), u_transposed);
    pre_rows.add_(sentence_term.narrow(0, offset, count).unsqueeze(1));
    const Tensor positive = pre_k.clamp_min(0).sign_();
    Tensor derivative = prelu_derivative.narrow(0, offset, count).view({-1, dim});
    at::lerp_out(derivative, slope.expand_as(pre_k), ones.expand_as(pre_k), positive);
    const Tensor z = at::addcmul(h, gate.unsqueeze(-1), at::prelu(pre_k, slope).view_as(h));
    Tensor norm = norms.narrow(0, offset, count);
    at::linalg_vector_norm_out(norm, z, 2, at::IntArrayRef{-1}, true);
    norm.clamp_min_(norm_eps);
    Tensor output = outputs.narrow(0, offset, count);
    at::div_out(output, z, norm);
    if (k + 1 < counts.size()) {
      const int64_t following = counts[k + 1];
      memories.narrow(0, offset + count, following).copy_(outputs.narrow(0, offset, following));
    }
  }
  return {memories, outputs, pre, prelu_derivative, gates, norms};
}

// The backward loop: writes grad_pre, grad_sentence_term, grad_gate_input and accumulates grad_slot_term,
// grad_slope and dh in place (all allocated by the caller, see entnet.py).
void backward_loop(const Tensor& sentences, const Tensor& u_weight, const Tensor& slope, const Tensor& outputs,
                   const Tensor& pre, const Tensor& prelu_derivative, const Tensor& gates, const Tensor& norms,
                   const Tensor& gate_slope, const c10::optional<Tensor>& grad_gates, bool norm_clamped,
                   const std::vector<int64_t>& counts, const std::vector<int64_t>& offsets, double norm_eps,
                   Tensor& grad_pre, Tensor& grad_sentence_term, Tensor& grad_slot_term, Tensor& grad_gate_input,
                   Tensor& grad_slope, Tensor& dh) {
  const int64_t slots = pre.size(1), dim = pre.size(2);
  for (int64_t k = static_cast<int64_t>(counts.size()) - 1; k >= 0; --k) {
    const int64_t offset = offsets[k], count = counts[k];
    const Tensor h_new = outputs.narrow(0, offset, count);
    Tensor dh_k = dh.narrow(0, 0, count);
    Tensor radial = (h_new * dh_k).sum(-1, true);
    const Tensor norm = norms.narrow(0, offset, count);
    if (norm_clamped) radial.mul_(norm.gt(norm_eps).to(radial.scalar_type()));
    const Tensor dz = at::addcmul(dh_k, h_new, radial, -1).div_(norm);
    const Tensor pre_k = pre.narrow(0, offset, count).view({-1, dim});
    Tensor dgate = (dz * at::prelu(pre_k, slope).view_as(dz)).sum(-1);
    if (grad_gates.has_value()) dgate += grad_gates->narrow(0, offset, count);
    Tensor gate_input = grad_gate_input.narrow(0, offset, count);
    at::mul_out(gate_input, dgate, gate_slope.narrow(0, offset, count));
    const Tensor grad_candidate = (dz * gates.narrow(0, offset, count).unsqueeze(-1)).view({-1, dim});
    Tensor grad_pre_rows = grad_pre.narrow(0, offset, count);
    Tensor dpre = grad_pre_rows.view({-1, dim});
    at::mul_out(dpre, grad_candidate, prelu_derivative.narrow(0, offset, count).view({-1, dim}));
    grad_slot_term.narrow(0, 0, count).add_(grad_pre_rows);
    Tensor sentence_rows = grad_sentence_term.narrow(0, offset, count);
    at::sum_out(sentence_rows, grad_pre_rows, at::IntArrayRef{1});
    grad_slope.narrow(0, 0, count * slots).addcmul_(grad_candidate, pre_k.clamp_max(0));
    Tensor dh_flat = dh_k.view({-1, dim});
    at::addmm_out(dh_flat, dz.view({-1, dim}), dpre, u_weight);
    dh_k.addcmul_(gate_input.unsqueeze(-1), sentences.narrow(0, offset, count).unsqueeze(1));
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("forward_loop", &forward_loop);
  module.def("backward_loop", &backward_loop);
}
