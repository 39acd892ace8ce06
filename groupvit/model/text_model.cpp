// The text tower (see text_model.h).
#include "groupvit/model/text_model.h"

#include <torch/torch.h>

#include <limits>
#include <stdexcept>

namespace groupvit {

GroupViTTextEmbeddingsImpl::GroupViTTextEmbeddingsImpl(const GroupViTTextConfig& c) {
  // Under SkipParameterInit given an uninitialised weight, so that the table is not filled with
  // normal_ only to be overwritten by the checkpoint.
  auto table = [](int64_t rows, int64_t width) {
    auto options = torch::nn::EmbeddingOptions(rows, width);
    if (SkipParameterInit::active()) options._weight(torch::empty({rows, width}));
    return torch::nn::Embedding(options);
  };
  token_embedding = register_module("token_embedding", table(c.vocab_size, c.hidden_size));
  position_embedding = register_module("position_embedding", table(c.max_position_embeddings, c.hidden_size));
  // The reference's position_ids buffer is non-persistent (not in its state dict): positions
  // are made on the fly instead, so named_buffers() stays equal to the checkpoint's keys.
}

torch::Tensor GroupViTTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const auto length = input_ids.size(-1);
  const auto max_positions = position_embedding->weight.size(0);
  if (length > max_positions)
    throw std::invalid_argument("text of " + std::to_string(length) + " tokens is longer than the model's " +
                                std::to_string(max_positions) + " positions");
  auto positions = torch::arange(length, input_ids.options().dtype(torch::kLong)).unsqueeze(0);
  return token_embedding(input_ids) + position_embedding(positions);
}

GroupViTTextEncoderImpl::GroupViTTextEncoderImpl(const GroupViTTextConfig& c) {
  const EncoderLayerOptions o{c.hidden_size, c.intermediate_size, c.num_attention_heads,
                              c.hidden_act,  c.layer_norm_eps,    c.attention_dropout};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(GroupViTEncoderLayer(o));
  register_module("layers", layers);
}

GroupViTEncoderOutput GroupViTTextEncoderImpl::forward(const torch::Tensor& inputs_embeds,
                                                       const torch::Tensor& attention_mask, bool output_hidden_states) {
  GroupViTEncoderOutput out;
  auto hidden = inputs_embeds;
  for (const auto& layer : *layers) {
    if (output_hidden_states) out.hidden_states.push_back(hidden);
    hidden = layer->as<GroupViTEncoderLayer>()->forward(hidden, attention_mask);
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden);
  out.last_hidden_state = hidden;
  return out;
}

GroupViTTextTransformerImpl::GroupViTTextTransformerImpl(const GroupViTTextConfig& c) : config_(c) {
  embeddings = register_module("embeddings", GroupViTTextEmbeddings(c));
  encoder = register_module("encoder", GroupViTTextEncoder(c));
  final_layer_norm = register_module("final_layer_norm", make_layer_norm(c.hidden_size, c.layer_norm_eps));
}

TextModelOutput GroupViTTextTransformerImpl::forward(const torch::Tensor& input_ids_in,
                                                     const torch::Tensor& attention_mask, bool output_hidden_states) {
  if (!input_ids_in.defined() || input_ids_in.dim() < 1)
    throw std::invalid_argument("input_ids must be a [batch, length] tensor");
  const auto input_ids = input_ids_in.reshape({-1, input_ids_in.size(-1)}).to(torch::kLong);
  const auto batch = input_ids.size(0);
  const auto length = input_ids.size(1);
  if (length == 0) throw std::invalid_argument("input_ids has zero length");
  const auto [lo, hi] = torch::aminmax(input_ids);
  if (lo.item<int64_t>() < 0 || hi.item<int64_t>() >= config_.vocab_size)
    throw std::invalid_argument("input_ids hold token ids outside the vocabulary [0, " +
                                std::to_string(config_.vocab_size) + ")");

  auto hidden = embeddings(input_ids);
  // Causal mask plus key padding, added to the scores: a finite lowest value (as the
  // reference uses) rather than -inf, so a fully masked row stays finite.
  const auto dtype = hidden.scalar_type();
  const double lowest = dtype == torch::kHalf       ? -65504.0
                        : dtype == torch::kBFloat16 ? -3.3895313892515355e38
                        : dtype == torch::kDouble   ? std::numeric_limits<double>::lowest()
                                                    : static_cast<double>(std::numeric_limits<float>::lowest());
  auto allowed =
      torch::ones({length, length}, input_ids.options().dtype(torch::kBool)).tril().view({1, 1, length, length});
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != input_ids.sizes())
      throw std::invalid_argument("attention_mask must have the shape of input_ids");
    allowed = allowed & attention_mask.to(torch::kBool).view({batch, 1, 1, length});
  }
  auto mask = torch::zeros(allowed.sizes(), hidden.options()).masked_fill(allowed.logical_not(), lowest);

  auto encoded = encoder(hidden, mask, output_hidden_states);
  TextModelOutput out;
  out.hidden_states = std::move(encoded.hidden_states);
  out.last_hidden_state = final_layer_norm(encoded.last_hidden_state);

  // Pool one row per sequence: the legacy eos id 2 of the hub configs selects the highest
  // token id (the end-of-text token); otherwise the first position holding eos_token_id.
  torch::Tensor index;
  if (config_.eos_token_id == 2) {
    index = input_ids.to(torch::kInt).argmax(-1);
  } else {
    index = input_ids.eq(config_.eos_token_id).to(torch::kInt).argmax(-1);
  }
  out.pooler_output = out.last_hidden_state.index(
      {torch::arange(batch, index.options().dtype(torch::kLong)), index.to(out.last_hidden_state.device())});
  return out;
}

}  // namespace groupvit
