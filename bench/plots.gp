# The suite's plots, from the .dat files bench/report.py writes:
#   gnuplot -e "dir='bench/results/latest'" bench/plots.gp
# dist-echo.png, dist-py.png   per-scenario distributions, normal vs preloaded
#                              (box: p25-p75, whiskers: min-p95, bar: median; log scale)
# scaling-latency.png          median hand-out latency vs concurrent callers, per pool size
# scaling-throughput.png       calls/s vs concurrent callers, per pool size
# b2b.png                      back-to-back preloaded calls in order, per refill delay
# memory.png                   memory per preload
load dir.'/plotvars.gp'
set terminal pngcairo size 900,520 font ",10"
set grid ytics
set key top left

# ---- distributions ----
do for [w in "echo py"] {
    set output dir.'/dist-'.w.'.png'
    set title (w eq "echo" ? "echo hi in a disposable" : "Python sandbox (Debian, resident interpreter)")
    set logscale y
    set ylabel "ms per call (log)"
    set boxwidth 0.6
    set autoscale x
    set offsets 0.7, 0.7, 0, 0
    set xtics rotate by -30
    set style fill solid 0.4
    f = dir.'/dist-'.w.'.dat'
    plot f using ($3 == 0 ? $1 : NaN):5:4:8:7 with candlesticks lc rgb "gray40" title "reference" whiskerbars, \
         f using ($3 == 1 ? $1 : NaN):5:4:8:7 with candlesticks lc rgb "red" title "normal disposable" whiskerbars, \
         f using ($3 == 2 ? $1 : NaN):5:4:8:7 with candlesticks lc rgb "forest-green" title "preloaded (max 4)" whiskerbars, \
         f using 1:6:6:6:6:xticlabels(2) with candlesticks lc rgb "black" lw 2 notitle
    unset logscale y
    set offsets 0, 0, 0, 0
}
set xtics norotate

# ---- scaling ----
set xlabel "concurrent callers"
set logscale x 2
set xtics (1, 2, 4, 8, 16, 32)
set output dir.'/scaling-latency.png'
set title "echo hi in a disposable: latency per call as callers grow (2 vCPUs)"
set ylabel "median ms per call (log)"
set logscale y
plot for [m in pools] dir.'/scale-m'.m.'.dat' using 1:2 with linespoints lw 2 \
     title (m eq "0" ? "normal (no preloading)" : "preloaded, max ".m)
unset logscale y
set output dir.'/scaling-throughput.png'
set title "echo hi in a disposable: throughput as callers grow (2 vCPUs)"
set ylabel "calls / s"
set yrange [0:*]
plot for [m in pools] dir.'/scale-m'.m.'.dat' using 1:4 with linespoints lw 2 \
     title (m eq "0" ? "normal (no preloading)" : "preloaded, max ".m)
unset logscale x
unset xtics
set xtics
unset yrange

# ---- back to back ----
set output dir.'/b2b.png'
set title "max 4: preloaded echo calls back to back, by refill delay"
set xlabel "call (in order)"
set ylabel "ms"
set yrange [0:*]
set key top right
plot for [i=0:2] dir.'/b2b.dat' index i using 1:2 with linespoints lw 2 title columnheader(1)
unset yrange

# ---- memory ----
set output dir.'/memory.png'
set title "memory per preloaded disposable"
set xlabel ""
set ylabel "MiB"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.6
set boxwidth 0.9
set yrange [*:*]
set key top left
set xzeroaxis
plot dir.'/memory.dat' using 3:xticlabels(2) title "charged to one paused preload (cgroup)", \
     '' using 4 title "host MemAvailable drop per preload"
