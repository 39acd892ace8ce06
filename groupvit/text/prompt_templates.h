// Prompt templates for zero-shot classification and segmentation: the CLIP ImageNet template
// sets as the GroupViT evaluation names them ("simple", "subset", "full"). "{}" stands for the
// class name. No LibTorch (part of groupvit_tokenizer).
#pragma once

#include <string>
#include <vector>

namespace groupvit {

// `tmpl` with its first "{}" replaced by `text`; a template without "{}" is followed by a space and
// the text ("a photo of" + "cat" = "a photo of cat"). Every prompt of the project is made here:
// segment's and eval's class prompts, train's --phrase-template.
std::string fill_template(const std::string& tmpl, const std::string& text);

// Each label in each template, class-major: texts[c * T + t] (the order NVlabs' build_text_embedding
// averages over). Throws std::invalid_argument when there are no templates.
std::vector<std::string> fill_templates(const std::vector<std::string>& labels,
                                        const std::vector<std::string>& templates);

// The one template of the paper's segmentation numbers.
inline const std::vector<std::string> kSimpleTemplates = {
    "a photo of a {}.",
};

// A 7-template subset of the CLIP ImageNet ensemble.
inline const std::vector<std::string> kSubsetTemplates = {
    "itap of a {}.",  "a bad photo of a {}.",     "a origami {}.", "a photo of the large {}.", "a {} in a video game.",
    "art of the {}.", "a photo of the small {}.",
};

// The 80 CLIP ImageNet templates.
inline const std::vector<std::string> kFullTemplates = {
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
};

}  // namespace groupvit
