//! Response bodies: nothing, a short text, or a file streamed in `CHUNK`-sized reads.

use super::*;

/// A response body: nothing, a short text, or a file streamed in `CHUNK`-sized reads.
pub struct ServeBody(BodyKind);

pub(super) enum BodyKind {
    Bytes(Option<Bytes>),
    File(FileBody),
}

impl ServeBody {
    pub(super) fn empty() -> Self {
        ServeBody(BodyKind::Bytes(None))
    }

    pub(super) fn bytes(b: Bytes) -> Self {
        ServeBody(BodyKind::Bytes(Some(b)))
    }

    pub(super) fn file(file: File, len: u64, path: PathBuf) -> Self {
        ServeBody(BodyKind::File(FileBody {
            state: ReadState::Idle(file),
            remaining: len,
            path,
        }))
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::File(f) => f.poll_chunk(cx).map(|r| r.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Bytes(b) => b.is_none(),
            BodyKind::File(f) => f.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::File(f) => SizeHint::with_exact(f.remaining),
        }
    }
}

/// Reads a file sequentially on the blocking pool, one chunk at a time, only when hyper
/// asks for the next frame: memory stays at one chunk per response, and a blocking thread
/// is held only while a read is running (a slow client holds none).
pub(super) struct FileBody {
    pub(super) state: ReadState,
    /// Bytes still owed: the Content-Length promised from fstat, never more.
    pub(super) remaining: u64,
    pub(super) path: PathBuf,
}

pub(super) enum ReadState {
    Idle(File),
    Reading(JoinHandle<(File, io::Result<Vec<u8>>)>),
    Done,
}

impl FileBody {
    pub(super) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match std::mem::replace(&mut self.state, ReadState::Done) {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Idle(_) if self.remaining == 0 => return Poll::Ready(None),
                ReadState::Idle(file) => {
                    let n = self.remaining.min(CHUNK);
                    self.state = ReadState::Reading(tokio::task::spawn_blocking(move || {
                        let r = read_chunk(&file, n);
                        (file, r)
                    }));
                }
                ReadState::Reading(mut task) => {
                    let Poll::Ready(joined) = Pin::new(&mut task).poll(cx) else {
                        self.state = ReadState::Reading(task);
                        return Poll::Pending;
                    };
                    return Poll::Ready(Some(self.chunk_read(joined)));
                }
            }
        }
    }

    pub(super) fn chunk_read(
        &mut self,
        joined: Result<(File, io::Result<Vec<u8>>), tokio::task::JoinError>,
    ) -> io::Result<Bytes> {
        let e = match joined {
            Ok((file, Ok(buf))) if !buf.is_empty() => {
                self.remaining -= buf.len() as u64;
                self.state = ReadState::Idle(file);
                return Ok(Bytes::from(buf));
            }
            // The length was promised in the header; a short file cannot keep the promise,
            // and the error makes hyper cut the connection instead of hanging the client.
            Ok((_, Ok(_))) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file shrank; {} bytes missing", self.remaining),
            ),
            Ok((_, Err(e))) => e,
            Err(e) => io::Error::other(e),
        };
        tracing::error!("reading {}: {e}", self.path.display());
        Err(e)
    }
}

/// Up to `n` bytes; fewer only at end of file.
pub(super) fn read_chunk(file: &File, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut buf)?;
    Ok(buf)
}
