//! One cost-10 bcrypt hash on one core, with the operator's own bcrypt crate: the floor of a
//! cold start is N × this / cores. `make bench` runs it; prints seconds per hash.
fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    // One warm-up hash, then the timed ones, one after another on this thread.
    let _ = bcrypt::hash("warm-up", 10);
    let start = std::time::Instant::now();
    for i in 0..rounds {
        let _ = bcrypt::hash(format!("Bench-Password-{i}"), 10);
    }
    println!("{:.6}", start.elapsed().as_secs_f64() / f64::from(rounds));
}
