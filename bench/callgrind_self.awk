# bench/callgrind_self.awk - self cost (instructions) per function in one
# callgrind dump, as "COST NAME" lines. callgrind_annotate 3.19 puts all
# of a part dump (callgrind_control -d) under __libc_start_main, so
# bench/profile reads the file itself. Names are compressed: "(id) name"
# defines one, "(id)" refers to it. The cost line after a calls= line is
# the callee's inclusive cost and is not the caller's own.
function name(s,   id, n) {
    if (match(s, /^\([0-9]+\)/)) {
        id = substr(s, 2, RLENGTH - 2)
        n = substr(s, RLENGTH + 2)
        if (n != "")
            names[id] = n
        return names[id]
    }
    return s
}
/^fn=/ { fn = name(substr($0, 4)); next }
/^cfn=/ { name(substr($0, 5)); next }
/^calls=/ { skip = 1; next }
/^[0-9+*-]/ {
    if (skip) { skip = 0; next }
    self[fn] += $2
    next
}
END { for (f in self) if (self[f] > 0) printf "%d %s\n", self[f], f }
