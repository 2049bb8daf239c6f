//! rustic_core's storage backend on kiln's own S3 client ([`kiln_s3::S3Client`]): restic's
//! layout (`config`, `keys/ID`, `snapshots/ID`, `index/ID`, `data/XX/ID`) under the
//! repository's prefix.
//!
//! Why not rustic_backend's opendal S3 backend: it sends a listing's `prefix` with raw `/`
//! in the URL while signing it encoded, which the lab's S3 server (moto, with its IAM
//! checks on) refuses as `SignatureDoesNotMatch`, so no repository could be opened there.
//! kiln's client signs what it sends, is the one that checks the bucket's Object Lock, and
//! sends a checksum with every upload, as Object Lock buckets require. It also spares
//! the build opendal and a tokio runtime.

use kiln_s3::S3Client;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// A repository's place in a bucket.
pub struct S3Backend {
    client: S3Client,
    bucket: String,
    /// `prefix/` (or empty for the bucket's root).
    prefix: String,
    url: String,
}

impl S3Backend {
    pub fn new(client: S3Client, bucket: &str, prefix: &str, url: String) -> S3Backend {
        let prefix = prefix.trim_matches('/');
        S3Backend {
            client,
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            url,
        }
    }

    /// The key of a file (restic's layout).
    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.prefix),
            FileType::Pack => format!("{}data/{}/{hex}", self.prefix, &hex[..2]),
            other => format!("{}{}/{hex}", self.prefix, other.dirname()),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Box<RusticError> {
        RusticError::new(ErrorKind::Backend, "S3 {what} at {url} failed: {message}")
            .attach_context("what", what.to_owned())
            .attach_context("url", self.url.clone())
            .attach_context("message", e.to_string())
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = format!("{}config", self.prefix);
            let found = self
                .client
                .list_objects(&self.bucket, &key)
                .map_err(|e| self.error("listing", e))?;
            return Ok(found
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, size)| (Id::default(), u32::try_from(*size).unwrap_or(u32::MAX)))
                .collect());
        }
        let dir = format!("{}{}/", self.prefix, tpe.dirname());
        let found = self
            .client
            .list_objects(&self.bucket, &dir)
            .map_err(|e| self.error("listing", e))?;
        Ok(found
            .into_iter()
            .filter_map(|(key, size)| {
                let name = key.rsplit('/').next()?;
                let id: Id = name.parse().ok()?;
                Some((id, u32::try_from(size).ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        let key = self.key(tpe, id);
        self.client
            .get_object(&self.bucket, &key, None)
            .map(bytes::Bytes::from)
            .map_err(|e| self.error("read", e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        let key = self.key(tpe, id);
        self.client
            .get_object_range(&self.bucket, &key, offset.into(), length.into())
            .map(bytes::Bytes::from)
            .map_err(|e| self.error("ranged read", e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = self.key(tpe, id);
        let mut body = Vec::with_capacity(content.size());
        for b in content.slice() {
            body.extend_from_slice(b);
        }
        self.client
            .put_object(&self.bucket, &key, &body)
            .map(|_| ())
            .map_err(|e| self.error("upload", e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        let r = self
            .client
            .delete_object(&self.bucket, &key, None)
            .map_err(|e| self.error("delete", e))?;
        if r.is_success() {
            Ok(())
        } else {
            Err(self.error(
                "delete",
                format!(
                    "{key}: HTTP {} {}",
                    r.status,
                    r.error_code().unwrap_or_default()
                ),
            ))
        }
    }
}
