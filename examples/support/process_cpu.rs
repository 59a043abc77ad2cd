//! CPU time of every process on the machine, from `/proc/<pid>/stat` (Linux), for the
//! benchmarks that report what the database and the broker spent beside spbridge.

/// Every process's id, command name and user + system milliseconds.
pub fn process_cpu_ms() -> Vec<(u32, String, f64)> {
    // Clock ticks are 100 per second on Linux.
    const TICK_MS: f64 = 10.0;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces or parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<f64> = stat[close + 1..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        // Fields after the name: utime is the 12th, stime the 13th.
        let at = |i: usize| fields.get(i).copied().unwrap_or(0.0) * TICK_MS;
        out.push((pid, name, at(11) + at(12)));
    }
    out
}
