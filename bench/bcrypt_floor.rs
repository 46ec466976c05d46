//! The floor's unit of work: one cost-10 bcrypt hash on one core, alone. `make bench` runs
//! it; prints one JSON line of seconds per hash:
//! - `crate`: the `bcrypt` crate, one hash after another;
//! - `operator_alone`: the operator's own bcrypt, one hash after another (a lone password);
//! - `operator_interleaved`: the operator's own bcrypt with four passwords interleaved on the
//!   thread, per hash (what a burst of new accounts gets per core).
//!
//! The floor is the fastest lone hash, so a faster lone hash of the operator's own makes the
//! floor stricter; interleaving is reported beside it, never used as the floor.
use librechat_operator::librechat::eks::{self, Lane};
use librechat_operator::librechat::password::{hash_alone_blocking, BCRYPT_COST};

fn per_hash(rounds: u32, hashes_per_round: u32, mut one: impl FnMut(u32)) -> f64 {
    one(u32::MAX); // warm-up
    let start = std::time::Instant::now();
    for i in 0..rounds {
        one(i);
    }
    start.elapsed().as_secs_f64() / f64::from(rounds * hashes_per_round)
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let password = |i: u32| format!("Bench-Password-{i}");
    let salt = |i: u32| [(i % 251) as u8; 16];
    let crate_s = per_hash(rounds, 1, |i| {
        std::hint::black_box(bcrypt::hash_with_salt(password(i), BCRYPT_COST, salt(i)).unwrap());
    });
    let alone_s = per_hash(rounds, 1, |i| {
        std::hint::black_box(hash_alone_blocking(&password(i), salt(i)));
    });
    let interleaved_s = per_hash(rounds.div_ceil(4), 4, |i| {
        let passwords: [String; 4] =
            std::array::from_fn(|k| password(i.wrapping_mul(4) + k as u32));
        let lanes: [Lane; 4] = std::array::from_fn(|k| Lane {
            password: passwords[k].as_bytes(),
            salt: salt(i),
        });
        std::hint::black_box(eks::bcrypt::<4>(BCRYPT_COST, &lanes));
    });
    println!(
        "{{\"crate\": {crate_s:.6}, \"operator_alone\": {alone_s:.6}, \"operator_interleaved\": {interleaved_s:.6}}}"
    );
}
