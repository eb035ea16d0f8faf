// Aligned plain-text tables, in the manner of Go's text/tabwriter with padding 3 (what kubectl and
// `cilium status` print), so agentctl output lines up the way operators expect.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace nodepath::agentctl {

// Rows of cells rendered left-aligned with Go tabwriter's column-block rule: a cell is aligned
// with the cells of the same column in the *adjacent* rows that also have a cell after it, and is
// as wide as the widest of those plus `padding` spaces. The last cell of a row is never padded and
// widens nothing, so a long trailing field (a backend list) stays cheap; a row with fewer cells
// (a one-cell section heading) ends the block, so what follows it is aligned on its own, as in
// `cilium status`. Lines carry no trailing spaces. Width counts UTF-8 code points, not bytes.
class Table {
 public:
  explicit Table(std::string indent = "", std::size_t padding = 3);

  void addRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }

  // The rendered lines, each ending in '\n'; empty string for an empty table.
  std::string render() const;

 private:
  // Assigns widths_[row][col] for the column blocks of `col` within rows [first, last).
  void layoutColumn(std::size_t first, std::size_t last, std::size_t col,
                    std::vector<std::vector<std::size_t>>& widths) const;
  bool hasCellAfter(std::size_t row, std::size_t col) const { return col + 1 < rows_[row].size(); }

  std::string indent_;
  std::size_t padding_;
  std::vector<std::vector<std::string>> rows_;
};

std::ostream& operator<<(std::ostream& os, const Table& table);

// Display width of a UTF-8 string (code points; no East Asian width handling).
std::size_t displayWidth(const std::string& s);

}  // namespace nodepath::agentctl
