//! Content-defined chunking with CernVM-FS's xor32 rolling checksum
//! (`ingestion/chunk_detector.cc`): equal content gives equal chunks wherever it sits in a
//! file, so a changed byte re-uploads one chunk rather than the whole file.

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizes {
    /// No cut before this many bytes; files no larger are not chunked.
    pub min: u64,
    /// Target average chunk size; it sets how likely a cut is at each byte.
    pub avg: u64,
    /// Every chunk ends at this size at the latest.
    pub max: u64,
}

impl Default for ChunkSizes {
    /// 4, 8 and 16 MiB, as `CVMFS_{MIN,AVG,MAX}_CHUNK_SIZE`.
    fn default() -> Self {
        ChunkSizes {
            min: 4 << 20,
            avg: 8 << 20,
            max: 16 << 20,
        }
    }
}

impl ChunkSizes {
    /// Checks `64 <= min < avg < max`, or says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.min < 64 || !(self.min < self.avg && self.avg < self.max) {
            return Err(format!(
                "chunk sizes must satisfy 64 <= min < avg < max, got {}/{}/{}",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }

    /// Files larger than the minimum chunk size are candidates for chunking.
    pub fn might_chunk(&self, size: u64) -> bool {
        size > self.min
    }
}

const WINDOW: u64 = 32;
const MAGIC: i32 = i32::MAX; // 0x7fffffff = UINT32_MAX / 2

/// Finds cut points in a stream fed in pieces.
pub struct ChunkDetector {
    sizes: ChunkSizes,
    threshold: i32,
    xor32: u32,
    /// Bytes of the current chunk seen so far.
    pos: u64,
}

impl ChunkDetector {
    /// A detector at the start of a chunk.
    pub fn new(sizes: ChunkSizes) -> Self {
        let threshold = (u32::MAX as u64 / sizes.avg) as i32;
        ChunkDetector {
            sizes,
            threshold,
            xor32: 0,
            pos: 0,
        }
    }

    /// Feeds `data`, which continues the current chunk. Returns `Some(n)` if the chunk ends
    /// after the first `n` bytes of `data` (the rest starts the next chunk; the detector is
    /// already reset for it), `None` if all of `data` belongs to the current chunk.
    pub fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0usize;
        let warmup = self.sizes.min - WINDOW;
        while i < data.len() {
            if self.pos < warmup {
                // Bytes before the window that precedes `min` do not influence the checksum.
                let skip = ((warmup - self.pos) as usize).min(data.len() - i);
                self.pos += skip as u64;
                i += skip;
                continue;
            }
            if self.pos == self.sizes.max {
                self.reset();
                return Some(i);
            }
            let b = data[i];
            self.xor32 = (self.xor32 << 1) ^ u32::from(b);
            if self.pos >= self.sizes.min {
                // The cut test as upstream computes it: abs() of a wrapping 32-bit difference.
                let diff = (self.xor32 as i32).wrapping_sub(MAGIC);
                if diff.wrapping_abs() < self.threshold {
                    self.reset();
                    return Some(i);
                }
            }
            self.pos += 1;
            i += 1;
        }
        None
    }

    fn reset(&mut self) {
        self.xor32 = 0;
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's test PRNG (`util/prng.h`): a 64-bit LCG, bytes scaled through a double.
    fn prng_bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state as f64 * 256.0 / 18446744073709551616.0) as u64 % 256) as u8
            })
            .collect()
    }

    fn cuts(data: &[u8], sizes: ChunkSizes, piece: usize) -> Vec<u64> {
        let mut d = ChunkDetector::new(sizes);
        let mut out = Vec::new();
        let mut base = 0u64;
        for part in data.chunks(piece) {
            let mut rest = part;
            let mut off = 0u64;
            while let Some(n) = d.feed(rest) {
                off += n as u64;
                out.push(base + off);
                rest = &rest[n..];
            }
            base += part.len() as u64;
        }
        out
    }

    #[test]
    fn matches_upstream_test_vector() {
        // t_chunk_detectors.cc: seed 42, min/avg/max 512000/1024000/2048000.
        let data = prng_bytes(42, 3_600_000);
        let sizes = ChunkSizes {
            min: 512_000,
            avg: 1_024_000,
            max: 2_048_000,
        };
        for piece in [1 << 20, 4096, 777] {
            let c = cuts(&data, sizes, piece);
            assert_eq!(&c[..3], &[742_752, 2_790_752, 3_521_796], "piece {piece}");
        }
    }

    #[test]
    fn hard_cut_at_max_and_none_before_min() {
        let sizes = ChunkSizes {
            min: 128,
            avg: 1 << 30,
            max: 1000,
        };
        let data = vec![0u8; 2500];
        assert_eq!(cuts(&data, sizes, 300), vec![1000, 2000]);
    }
}
