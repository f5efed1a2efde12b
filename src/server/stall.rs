//! The write-stall guard around a client's TCP stream.

use super::*;

/// A TCP stream whose writes fail once the peer has accepted nothing for `limit`: hyper
/// only bounds reading the request head, and a client that stops reading a large response
/// would otherwise hold its connection slot (and, at shutdown, the drain) indefinitely.
///
/// It also tells the connection whether a write is waiting for the client: a response that
/// is still on its way out is not finished, so its connection is not idle.
pub(super) struct WriteStall {
    pub(super) inner: TcpStream,
    pub(super) limit: Duration,
    pub(super) timer: Option<Pin<Box<Sleep>>>,
    pub(super) activity: Arc<Activity>,
}

impl WriteStall {
    pub(super) fn new(inner: TcpStream, limit: Duration, activity: Arc<Activity>) -> Self {
        WriteStall {
            inner,
            limit,
            timer: None,
            activity,
        }
    }

    /// Progress clears the timer; the first Pending starts it; its expiry is an error.
    pub(super) fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        self.activity
            .write_pending
            .store(r.is_pending(), Ordering::Relaxed);
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for too long",
        )))
    }
}

impl AsyncRead for WriteStall {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteStall {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, r)
    }
}
