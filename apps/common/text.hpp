// Small text helpers shared by slipwayd and slipwayctl (cold paths: errors and output).
#pragma once

#include <string>

namespace slipway::apps {

// Folds a possibly multi-line message (CLI11, toml++ and HTTP bodies produce them) into one line,
// as DESIGN §4 wants every error to be: newlines become spaces, trailing blanks are cut.
inline std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    while (!s.empty() && s.back() == ' ')
        s.pop_back();
    return s;
}

}  // namespace slipway::apps
