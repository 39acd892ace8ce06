// Filling prompt templates (see prompt_templates.h).
#include "groupvit/text/prompt_templates.h"

#include <stdexcept>

namespace groupvit {

std::string fill_template(const std::string& tmpl, const std::string& text) {
  const auto at = tmpl.find("{}");
  return at == std::string::npos ? tmpl + " " + text : tmpl.substr(0, at) + text + tmpl.substr(at + 2);
}

std::vector<std::string> fill_templates(const std::vector<std::string>& labels,
                                        const std::vector<std::string>& templates) {
  if (templates.empty()) throw std::invalid_argument("no prompt templates");
  std::vector<std::string> texts;
  texts.reserve(labels.size() * templates.size());
  for (const auto& label : labels) {
    for (const auto& t : templates) texts.push_back(fill_template(t, label));
  }
  return texts;
}

}  // namespace groupvit
