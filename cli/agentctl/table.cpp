#include "table.h"

#include <algorithm>

namespace nodepath::agentctl {

Table::Table(std::string indent, std::size_t padding)
    : indent_(std::move(indent)), padding_(padding) {}

void Table::addRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

std::size_t displayWidth(const std::string& s) {
  // Continuation bytes (10xxxxxx) do not start a code point.
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

void Table::layoutColumn(std::size_t first, std::size_t last, std::size_t col,
                         std::vector<std::vector<std::size_t>>& widths) const {
  std::size_t row = first;
  while (row < last) {
    if (!hasCellAfter(row, col)) {
      ++row;
      continue;
    }
    const std::size_t blockStart = row;
    std::size_t width = 0;
    for (; row < last && hasCellAfter(row, col); ++row) {
      width = std::max(width, displayWidth(rows_[row][col]) + padding_);
    }
    for (std::size_t r = blockStart; r < row; ++r) widths[r][col] = width;
    layoutColumn(blockStart, row, col + 1, widths);
  }
}

std::string Table::render() const {
  std::vector<std::vector<std::size_t>> widths(rows_.size());
  for (std::size_t r = 0; r < rows_.size(); ++r) widths[r].resize(rows_[r].size(), 0);
  layoutColumn(0, rows_.size(), 0, widths);
  std::string out;
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    const auto& row = rows_[r];
    std::string line = indent_;
    for (std::size_t col = 0; col < row.size(); ++col) {
      line += row[col];
      if (col + 1 < row.size()) {
        line.append(widths[r][col] - displayWidth(row[col]), ' ');
      }
    }
    // An empty last cell would otherwise leave the padding of the one before it.
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Table& table) { return os << table.render(); }

}  // namespace nodepath::agentctl
