# shellcheck shell=bash
# Shared by compare.sh (ClusterIP) and nodeport.sh (NodePort from the LAN): the summary statistic
# and the rate-vs-services plot.

stat() { # stdin: numbers -> "median min max"
  sort -g | awk '{ v[NR] = $1 } END { if (!NR) { print "- - -"; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}

# rate_plot <png> <title> <ylabel> <ymax> <values-fn> <scales (space-separated)> <variant>...:
# one line with error bars per variant over the scales; `values-fn <scale> <variant>` prints that
# cell's per-round ratios, one a line (a cell without any is left out).
rate_plot() {
  local png=$1 title=$2 ylabel=$3 ymax=$4 values=$5 scales=$6
  shift 6
  local data v n m lo hi cmds idx=0 sep=
  data=$(mktemp)
  for v in "$@"; do
    echo "# $v"
    for n in $scales; do
      read -r m lo hi < <("$values" "$n" "$v" | stat)
      [[ $m != - ]] && echo "$n $m $lo $hi"
    done
    printf '\n\n'
  done >"$data"
  cmds="set terminal pngcairo size 900,540; set output '$png';"
  cmds+="set title '$title'; set logscale x; set xlabel 'services (x ${backends:-10} endpoints)'; set ylabel '$ylabel'; set yrange [0:$ymax]; set key bottom left; set grid;"
  cmds+="plot"
  for v in "$@"; do
    cmds+="$sep '$data' index $idx using 1:2:3:4 with yerrorlines title '$v'"
    idx=$((idx + 1)) sep=,
  done
  gnuplot -e "$cmds"
  rm -f "$data"
}
