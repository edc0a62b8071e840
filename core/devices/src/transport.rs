//! The PD listener's frame transport: every frame is a 4-byte big-endian length and that
//! many bytes (1 to the configured maximum). What a frame holds is the device-protocol
//! plugin's (`docs/pds/`); the transport only bounds it in size and in time.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a connection's frames stop.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length is 0 or above the limit: the connection is closed without
    /// reading the body.
    #[error("frame of {declared} bytes declared; frames are 1 to {max} bytes")]
    Size { declared: u64, max: usize },
    /// No frame began within the idle time-out.
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    /// A frame began and did not finish within the frame time-out (a slow or stalled
    /// sender).
    #[error("a frame took longer than {0:?} to arrive")]
    Slow(Duration),
    /// The peer closed the connection inside a frame.
    #[error("the connection closed inside a frame")]
    Truncated,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(String),
}

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame body, bytes.
    pub max_frame_bytes: usize,
    /// Longest wait for the next frame to begin.
    pub idle: Duration,
    /// Longest time from a frame's first byte to its last.
    pub frame: Duration,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_bytes: 256 << 10,
            idle: Duration::from_secs(120),
            frame: Duration::from_secs(30),
        }
    }
}

/// Reads the next frame. `Ok(None)`: the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: &FrameLimits,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.idle, r.read(&mut first)).await {
        Err(_) => return Err(FrameError::Idle(limits.idle)),
        Ok(Err(e)) => return Err(FrameError::Io(e.to_string())),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    let body = async {
        let mut rest = [0u8; 3];
        r.read_exact(&mut rest).await?;
        let declared = u32::from_be_bytes([first[0], rest[0], rest[1], rest[2]]);
        let len = declared as usize;
        if len == 0 || len > limits.max_frame_bytes {
            return Ok(Err(FrameError::Size {
                declared: u64::from(declared),
                max: limits.max_frame_bytes,
            }));
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(Ok(buf))
    };
    match tokio::time::timeout(limits.frame, body).await {
        Err(_) => Err(FrameError::Slow(limits.frame)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Ok(Err(e)) => Err(FrameError::Io(e.to_string())),
        Ok(Ok(result)) => result.map(Some),
    }
}

/// Writes one frame (within the frame time-out: a peer that does not read is dropped).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
    limits: &FrameLimits,
) -> Result<(), FrameError> {
    if body.is_empty() || body.len() > limits.max_frame_bytes {
        return Err(FrameError::Size {
            declared: body.len() as u64,
            max: limits.max_frame_bytes,
        });
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::Size {
        declared: body.len() as u64,
        max: limits.max_frame_bytes,
    })?;
    let write = async {
        w.write_all(&len.to_be_bytes()).await?;
        w.write_all(body).await?;
        w.flush().await
    };
    match tokio::time::timeout(limits.frame, write).await {
        Err(_) => Err(FrameError::Slow(limits.frame)),
        Ok(Err(e)) => Err(FrameError::Io(e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FrameLimits {
        FrameLimits {
            max_frame_bytes: 16,
            idle: Duration::from_millis(200),
            frame: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_close_is_none() {
        let (mut a, mut b) = tokio::io::duplex(64);
        write_frame(&mut a, b"hello", &limits()).await.unwrap();
        write_frame(&mut a, &[7u8; 16], &limits()).await.unwrap();
        drop(a);
        assert_eq!(
            read_frame(&mut b, &limits()).await.unwrap().unwrap(),
            b"hello"
        );
        assert_eq!(
            read_frame(&mut b, &limits()).await.unwrap().unwrap(),
            [7u8; 16]
        );
        assert_eq!(read_frame(&mut b, &limits()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_empty_truncated_slow_and_idle_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&17u32.to_be_bytes()).await.unwrap();
        assert_eq!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Size {
                declared: 17,
                max: 16
            })
        );
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Size { .. })
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&0u32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Size { .. })
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 5, b'a']).await.unwrap();
        drop(a);
        assert_eq!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Truncated)
        );
        // Slow: the length arrives, the body never does.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 5, b'a']).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Slow(_))
        ));
        // Idle: nothing at all.
        let (_a, mut b) = tokio::io::duplex(64);
        assert!(matches!(
            read_frame(&mut b, &limits()).await,
            Err(FrameError::Idle(_))
        ));
        // Writing an oversized frame is refused before anything is sent.
        let (mut a, _b) = tokio::io::duplex(64);
        assert!(write_frame(&mut a, &[0u8; 17], &limits()).await.is_err());
        assert!(write_frame(&mut a, &[], &limits()).await.is_err());
    }
}
