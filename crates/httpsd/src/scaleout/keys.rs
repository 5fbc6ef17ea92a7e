//! The Redis key layout of one deployment (everything under `--redis-prefix`) and the
//! job id: the one string that names a (path, parameters) pair everywhere.

use crate::params::{Params, Query};
use crate::tree::{SubPath, SubPathError};

/// The keys of one deployment, all starting with its prefix (default `httpsd:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (used as is: `httpsd:` gives `httpsd:queue`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Hash holding the last good result of a job.
    pub fn result(&self, id: &str) -> String {
        format!("{}result:{id}", self.prefix)
    }

    /// Hash holding the last failure of a job.
    pub fn error(&self, id: &str) -> String {
        format!("{}error:{id}", self.prefix)
    }

    /// List of job ids waiting for a worker (LPUSH in, BLMOVE out from the right).
    pub fn queue(&self) -> String {
        format!("{}queue", self.prefix)
    }

    /// Set of job ids queued or being processed: the O(1) de-duplication.
    pub fn pending(&self) -> String {
        format!("{}pending", self.prefix)
    }

    /// Set of job ids to run once more when their current run finishes (hard reloads).
    pub fn rerun(&self) -> String {
        format!("{}rerun", self.prefix)
    }

    /// List of the job ids a worker has taken and not finished yet.
    pub fn processing(&self, worker: &str) -> String {
        format!("{}processing:{worker}", self.prefix)
    }

    /// Set of worker ids that have registered (alive or dead, until cleaned up).
    pub fn workers(&self) -> String {
        format!("{}workers", self.prefix)
    }

    /// Heartbeat hash of a worker, expiring when the worker stops refreshing it.
    pub fn worker(&self, worker: &str) -> String {
        format!("{}worker:{worker}", self.prefix)
    }
}

/// The job id (and key suffix) of a path with parameters: `/targets/<path>?<params>`,
/// path components percent-encoded, parameters sorted by key.
///
/// The URL prefix is not part of it: every server of a deployment, whatever its
/// prefix, and `?debug=true`/`?reload=true` name the same job.
pub fn job_id(sub: &SubPath, params: &Params) -> String {
    let path = if sub.is_root() {
        String::new()
    } else {
        crate::tree::encode_path(&sub.as_rel())
    };
    format!("/targets/{path}?{}", params.canonical())
}

/// Why a job id cannot be turned back into a path and parameters.
#[derive(Debug, thiserror::Error)]
pub enum JobIdError {
    /// It does not start with `/targets/` or has no `?`.
    #[error("malformed job id {0:?}")]
    Malformed(String),
    /// The path part is refused.
    #[error("job id {id:?}: {source}")]
    Path {
        /// The id.
        id: String,
        /// Why.
        source: SubPathError,
    },
}

/// Parses a job id made by [`job_id`].
pub fn parse_job_id(id: &str) -> Result<(SubPath, Params), JobIdError> {
    let rest = id
        .strip_prefix("/targets/")
        .ok_or_else(|| JobIdError::Malformed(id.to_string()))?;
    let (path, query) = rest
        .split_once('?')
        .ok_or_else(|| JobIdError::Malformed(id.to_string()))?;
    let sub = SubPath::parse(path).map_err(|source| JobIdError::Path {
        id: id.to_string(),
        source,
    })?;
    Ok((sub, Query::parse(Some(query)).params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_ignore_param_order() {
        let sub = SubPath::parse("a%20b/c").unwrap();
        let p1 = Params::from_pairs([("z", "1"), ("a", "x y")]);
        let p2 = Params::from_pairs([("a", "x y"), ("z", "1")]);
        let id = job_id(&sub, &p1);
        assert_eq!(id, "/targets/a%20b/c?a=x+y&z=1");
        assert_eq!(id, job_id(&sub, &p2));
        let (s, p) = parse_job_id(&id).unwrap();
        assert_eq!(s, sub);
        assert_eq!(p, p1.canonical());
        assert_eq!(job_id(&SubPath::root(), &Params::empty()), "/targets/?");
        assert!(parse_job_id("/targets/../x?").is_err());
        assert!(parse_job_id("nope").is_err());
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("team-a:");
        assert_eq!(k.queue(), "team-a:queue");
        assert_eq!(k.result("/targets/x?"), "team-a:result:/targets/x?");
        assert_eq!(k.processing("w1"), "team-a:processing:w1");
    }
}
