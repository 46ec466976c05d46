//! bcrypt's EksBlowfish, for up to [`MAX_LANES`] passwords at once on one thread.
//!
//! One bcrypt hash is a single chain of dependent S-box lookups: a core spends most of its
//! cycles waiting on the previous lookup, so one hash at a time leaves most of the core idle.
//! Interleaving the chains of several independent passwords (the "lanes") lets the core run
//! them side by side; a cold start hashing thousands of passwords gets two to three times the
//! hashes per core of a lone hash, and each result is exactly the hash the `bcrypt` crate
//! (and LibreChat's bcryptjs) computes for the same password, salt and cost: the tests compare
//! them byte for byte. Knows nothing of salts' randomness or hash strings: see
//! [`password`](super::password).

mod pi;

use zeroize::Zeroize;

/// The most passwords hashed together on one thread. Each lane's state is 4 KiB; four fit in
/// a core's L1 data cache and in x86-64's registers without spilling the chains.
pub const MAX_LANES: usize = 4;

/// bcrypt's lowest and highest cost (log2 of the rounds).
pub const COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// One password's inputs: its bytes as bcrypt takes them (see [`key_bytes`]) and a salt.
pub struct Lane<'a> {
    pub password: &'a [u8],
    pub salt: [u8; 16],
}

/// The 23 bytes of a bcrypt hash (the last of the 24 computed is dropped, as every bcrypt does).
pub type Digest = [u8; 23];

/// bcrypt of `K` passwords at one cost, interleaved; `cost` must be in [`COSTS`].
pub fn bcrypt<const K: usize>(cost: u32, lanes: &[Lane<'_>; K]) -> [Digest; K] {
    assert!(
        COSTS.contains(&cost),
        "bcrypt cost {cost} is outside 4 to 31"
    );
    let keys: [KeyWords; K] = std::array::from_fn(|k| KeyWords::of_password(lanes[k].password));
    let salts: [SaltWords; K] = std::array::from_fn(|k| SaltWords::of(&lanes[k].salt));
    let salt_keys: [KeyWords; K] = std::array::from_fn(|k| salts[k].as_key());
    let mut states: [State; K] = std::array::from_fn(|_| State::initial());
    expand::<K, true>(&mut states, &keys, &salts);
    for _ in 0..1u64 << cost {
        expand::<K, false>(&mut states, &keys, &salts);
        expand::<K, false>(&mut states, &salt_keys, &salts);
    }
    std::array::from_fn(|k| digest(&states[k]))
}

/// "OrpheanBeholderScryDoubt", encrypted 64 times with the final state.
fn digest(state: &State) -> Digest {
    const MAGIC: [u32; 6] = [
        0x4f72_7068,
        0x6561_6e42,
        0x6568_6f6c,
        0x6465_7253,
        0x6372_7944,
        0x6f75_6274,
    ];
    let mut out = [0u8; 24];
    for (pair, bytes) in MAGIC.chunks_exact(2).zip(out.chunks_exact_mut(8)) {
        let mut lr = [[pair[0], pair[1]]];
        for _ in 0..64 {
            encrypt(std::array::from_ref(state), &mut lr);
        }
        bytes[..4].copy_from_slice(&lr[0][0].to_be_bytes());
        bytes[4..].copy_from_slice(&lr[0][1].to_be_bytes());
    }
    // The 24th byte is dropped, as every bcrypt drops it.
    let mut digest = [0u8; 23];
    digest.copy_from_slice(&out[..23]);
    digest
}

/// The password as bcrypt keys Blowfish with it: its bytes and a NUL, cut at 72 bytes (which
/// drops the NUL of a password of 72 bytes or more), as the `bcrypt` crate and bcryptjs do.
pub fn key_bytes(password: &[u8], out: &mut [u8; 72]) -> usize {
    let copied = password.len().min(72);
    out[..copied].copy_from_slice(&password[..copied]);
    if copied < 72 {
        out[copied] = 0;
    }
    (copied + 1).min(72)
}

/// 18 big-endian words read cyclically from a key: what Blowfish's key schedule XORs into P.
struct KeyWords([u32; 18]);

impl KeyWords {
    fn of_password(password: &[u8]) -> Self {
        let mut bytes = [0u8; 72];
        let used = key_bytes(password, &mut bytes);
        let words = KeyWords(cyclic_words(&bytes[..used]));
        bytes.zeroize();
        words
    }
}

impl Drop for KeyWords {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn cyclic_words<const W: usize>(key: &[u8]) -> [u32; W] {
    let mut bytes = key.iter().cycle();
    std::array::from_fn(|_| {
        (0..4).fold(0u32, |word, _| {
            (word << 8) | u32::from(*bytes.next().unwrap())
        })
    })
}

/// The salt's four words: XORed into the chain in the salted key schedule, and the key of
/// every other schedule.
struct SaltWords([u32; 4]);

impl SaltWords {
    fn of(salt: &[u8; 16]) -> Self {
        SaltWords(cyclic_words(salt))
    }

    fn as_key(&self) -> KeyWords {
        KeyWords(std::array::from_fn(|i| self.0[i % 4]))
    }

    /// The two words XORed into the chain before its `n`th encryption.
    fn pair(&self, n: usize) -> [u32; 2] {
        let at = (2 * n) % 4;
        [self.0[at], self.0[at + 1]]
    }
}

/// A Blowfish state: the P-array and the four S-boxes. Zeroed when dropped: it is derived
/// from the password.
struct State {
    s: [[u32; 256]; 4],
    p: [u32; 18],
}

impl State {
    fn initial() -> Self {
        State { s: pi::S, p: pi::P }
    }

    #[inline(always)]
    fn f(&self, x: u32) -> u32 {
        let a = self.s[0][(x >> 24) as usize];
        let b = self.s[1][((x >> 16) & 0xff) as usize];
        let c = self.s[2][((x >> 8) & 0xff) as usize];
        let d = self.s[3][(x & 0xff) as usize];
        (a.wrapping_add(b) ^ c).wrapping_add(d)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.s.zeroize();
        self.p.zeroize();
    }
}

/// One Blowfish block encryption in each lane, the lanes' rounds interleaved so that the
/// core works on all of them while each waits on its lookups.
#[inline(always)]
fn encrypt<const K: usize>(states: &[State; K], lr: &mut [[u32; 2]; K]) {
    for i in 0..8 {
        for k in 0..K {
            lr[k][0] ^= states[k].p[2 * i];
        }
        for k in 0..K {
            lr[k][1] ^= states[k].f(lr[k][0]) ^ states[k].p[2 * i + 1];
        }
        for k in 0..K {
            lr[k][0] ^= states[k].f(lr[k][1]);
        }
    }
    for k in 0..K {
        let [l, r] = lr[k];
        lr[k] = [r ^ states[k].p[17], l ^ states[k].p[16]];
    }
}

/// Blowfish's key schedule in each lane: the key XORed into P, then P and the S-boxes
/// replaced by the chain of encryptions; with `SALTED`, the salt XORed into the chain first.
#[inline(never)]
fn expand<const K: usize, const SALTED: bool>(
    states: &mut [State; K],
    keys: &[KeyWords; K],
    salts: &[SaltWords; K],
) {
    for k in 0..K {
        for (p, key) in states[k].p.iter_mut().zip(&keys[k].0) {
            *p ^= key;
        }
    }
    let mut lr = [[0u32; 2]; K];
    let mut n = 0;
    let mut next = |states: &[State; K], lr: &mut [[u32; 2]; K]| {
        if SALTED {
            for k in 0..K {
                let [a, b] = salts[k].pair(n);
                lr[k][0] ^= a;
                lr[k][1] ^= b;
            }
        }
        n += 1;
        encrypt(states, lr);
    };
    for i in 0..9 {
        next(states, &mut lr);
        for k in 0..K {
            states[k].p[2 * i] = lr[k][0];
            states[k].p[2 * i + 1] = lr[k][1];
        }
    }
    for b in 0..4 {
        for j in 0..128 {
            next(states, &mut lr);
            for k in 0..K {
                states[k].s[b][2 * j] = lr[k][0];
                states[k].s[b][2 * j + 1] = lr[k][1];
            }
        }
    }
    lr.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_digest(password: &[u8], salt: [u8; 16], cost: u32) -> Digest {
        let parts = bcrypt::hash_with_salt(password, cost, salt).unwrap();
        let text = parts.to_string();
        let mut digest = [0u8; 23];
        use base64::Engine;
        bcrypt::BASE_64
            .decode_slice(&text[29..], &mut digest)
            .unwrap();
        digest
    }

    #[test]
    fn the_initial_state_is_pi() {
        // Blowfish's published first words of P and of S-box 0, and the last of S-box 3.
        assert_eq!(pi::P[0], 0x243f_6a88);
        assert_eq!(pi::S[0][0], 0xd131_0ba6);
        assert_eq!(pi::S[3][255], 0x3ac3_72e6);
    }

    #[test]
    fn published_vectors() {
        // OpenBSD's and jBCrypt's test vectors (cost 6 and 8).
        for (password, hash) in [
            (
                "",
                "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s.",
            ),
            (
                "a",
                "$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "$2a$08$aTsUwsyowQuzRrDqFflhgekJ8d9/7Z3GV3UcgvzQW3J5zMyrTvlz.",
            ),
        ] {
            let parts: bcrypt::HashParts = hash.parse().unwrap();
            let lane = Lane {
                password: password.as_bytes(),
                salt: parts.get_salt_raw(),
            };
            let [digest] = bcrypt::<1>(parts.get_cost(), &[lane]);
            assert_eq!(
                digest,
                crate_digest(password.as_bytes(), parts.get_salt_raw(), parts.get_cost())
            );
            assert!(bcrypt::verify(password, hash).unwrap());
        }
    }

    #[test]
    fn every_lane_count_matches_the_bcrypt_crate() {
        let passwords: [&[u8]; 4] = [
            b"Jane-Fixture-Pass-2",
            "pässwörd-ünïcode-🙂".as_bytes(),
            &[b'x'; 80],
            b"with\0nul",
        ];
        let salts: [[u8; 16]; 4] = std::array::from_fn(|i| [i as u8 * 37 + 1; 16]);
        let expected: Vec<Digest> = (0..4)
            .map(|i| crate_digest(passwords[i], salts[i], 4))
            .collect();
        let lanes: [Lane; 4] = std::array::from_fn(|i| Lane {
            password: passwords[i],
            salt: salts[i],
        });
        assert_eq!(bcrypt::<4>(4, &lanes).to_vec(), expected);
        let [a, b, c, _] = lanes;
        assert_eq!(bcrypt::<3>(4, &[a, b, c]).to_vec(), expected[..3]);
        for (i, password) in passwords.iter().enumerate() {
            let lane = Lane {
                password,
                salt: salts[i],
            };
            assert_eq!(bcrypt::<1>(4, &[lane])[0], expected[i]);
        }
    }

    #[test]
    fn passwords_of_71_72_and_73_bytes_are_cut_as_bcrypt_cuts_them() {
        for len in [71usize, 72, 73] {
            let password = vec![b'k'; len];
            let salt = [9u8; 16];
            let [a, b] = bcrypt::<2>(
                5,
                &[
                    Lane {
                        password: &password,
                        salt,
                    },
                    Lane {
                        password: b"other",
                        salt,
                    },
                ],
            );
            assert_eq!(a, crate_digest(&password, salt, 5), "{len} bytes");
            assert_eq!(b, crate_digest(b"other", salt, 5));
        }
    }
}
