//! Peer ids: positive, unpredictable, and never repeated during a server's life.

#[cfg(not(target_arch = "wasm32"))]
/// Ids are a secret keyed permutation (a Feistel network) of a counter: a bijection on
/// 32-bit values, so two counters never give the same id and nothing needs remembering,
/// yet without the keys the next id cannot be guessed from the previous ones. Counter values
/// whose output falls outside `2..=i32::MAX` are skipped (distinct counters still give
/// distinct ids), which leaves 0 and negative numbers free (Godot's "all" and "all but") and
/// 1 for a multiplayer server. The round function is not a vetted cipher: ids are hard to
/// guess, not secrets.
pub(crate) struct PeerIds {
    keys: [u32; 8],
    counter: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl PeerIds {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 32];
        fill_random(&mut seed);
        let mut keys = [0u32; 8];
        for (key, bytes) in keys.iter_mut().zip(seed.chunks_exact(4)) {
            *key = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        PeerIds { keys, counter: 0 }
    }

    fn permute(&self, value: u32) -> u32 {
        let (mut left, mut right) = (value >> 16, value & 0xFFFF);
        for key in self.keys {
            let mixed = round(right, key);
            (left, right) = (right, left ^ mixed);
        }
        (left << 16) | right
    }

    /// The next id, or `None` after 2^32 draws (about two billion ids).
    pub(crate) fn next(&mut self) -> Option<i32> {
        while self.counter <= u64::from(u32::MAX) {
            let value = self.permute(self.counter as u32);
            self.counter += 1;
            if value >= 2 && value <= i32::MAX as u32 {
                return Some(value as i32);
            }
        }
        None
    }
}

/// A random id in `2..=i32::MAX`, as Godot's `MultiplayerPeer.generate_unique_id`. Godot
/// hashes the clock and a few addresses; an OS random source makes the id unpredictable
/// too. Unlike [`PeerIds`], nothing prevents two calls from returning the same id.
pub(crate) fn random_peer_id() -> i32 {
    loop {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes);
        // Negative ids mean "everyone but", so the sign bit is dropped as Godot does; 0 and 1
        // (broadcast, the server) are drawn again.
        let id = (u32::from_le_bytes(bytes) & 0x7FFF_FFFF) as i32;
        if id >= 2 {
            return id;
        }
    }
}

/// Fills `buf` from the OS random source (getrandom; no TLS crate needed).
fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // Only without an OS random source; std's hasher keys still vary per process.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(chunk.as_ptr() as usize);
            let bytes = hasher.finish().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// A keyed 16-bit round function (murmur3's finaliser over the key-mixed half).
fn round(half: u32, key: u32) -> u32 {
    let mut h = (half ^ key).wrapping_mul(0x9E37_79B1);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h & 0xFFFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_positive_and_differ_between_servers() {
        let mut ids = PeerIds::new();
        let mut seen = HashSet::new();
        for _ in 0..200_000 {
            let id = ids.next().unwrap();
            assert!(id >= 2);
            assert!(seen.insert(id), "id {id} repeated");
        }
        let mut other = PeerIds::new();
        let a: Vec<i32> = (0..8).map(|_| other.next().unwrap()).collect();
        let mut third = PeerIds::new();
        let b: Vec<i32> = (0..8).map(|_| third.next().unwrap()).collect();
        assert_ne!(a, b, "two servers drew the same id sequence");
    }

    #[test]
    fn random_peer_ids_are_in_godots_range_and_vary() {
        let ids: Vec<i32> = (0..10_000).map(|_| random_peer_id()).collect();
        assert!(ids.iter().all(|&id| id >= 2), "an id below 2");
        let distinct: HashSet<i32> = ids.iter().copied().collect();
        // 10 000 draws from 2^31 values collide with probability about 2 %; a handful of
        // repeats would mean the source is not random.
        assert!(distinct.len() >= 9_990, "{} distinct ids", distinct.len());
        // The top bit of the 31 is set about half the time: the whole range is reached.
        let high = ids.iter().filter(|&&id| id >= 1 << 30).count();
        assert!((4_000..=6_000).contains(&high), "{high} ids above 2^30");
    }

    #[test]
    fn permutation_is_a_bijection_on_a_sample() {
        let ids = PeerIds::new();
        let outputs: HashSet<u32> = (0..100_000u32).map(|v| ids.permute(v)).collect();
        assert_eq!(outputs.len(), 100_000);
    }
}
