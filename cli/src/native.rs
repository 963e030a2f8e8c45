//! librdkafka admin calls made through its C API, where rust-rdkafka has no wrapper
//! (IncrementalAlterConfigs, the controller id) or drops the broker's error message
//! (CreateTopics, AlterConfigs): "topic x: unknown or unsupported config y" says more than
//! "Configuration is invalid". Each call runs on a private queue; every handle made here is
//! owned by a guard that destroys it once.

use crate::error::{code_name, describe_code, failed, is_unreachable, CliError};
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

/// One config operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Delete,
    Append,
    Subtract,
}

impl Op {
    fn native(self) -> rd::rd_kafka_AlterConfigOpType_t {
        use rd::rd_kafka_AlterConfigOpType_t as T;
        match self {
            Op::Set => T::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
            Op::Delete => T::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
            Op::Append => T::RD_KAFKA_ALTER_CONFIG_OP_TYPE_APPEND,
            Op::Subtract => T::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SUBTRACT,
        }
    }
}

/// Which API carries a config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// IncrementalAlterConfigs: only the keys named change.
    Incremental,
    /// AlterConfigs: the topic's overrides become exactly the SET entries given.
    Replace,
}

/// A failed call: `unreachable` when no broker answered in time.
#[derive(Debug)]
pub struct AdminError {
    pub message: String,
    pub unreachable: bool,
}

impl AdminError {
    fn local(message: String) -> AdminError {
        AdminError { message, unreachable: false }
    }

    /// The CLI's error: exit 3 when unreachable, else exit 1.
    pub fn into_cli(self, what: &str) -> CliError {
        if self.unreachable {
            CliError::Unreachable(format!("{what}: {}", self.message))
        } else {
            failed(format!("{what}: {}", self.message))
        }
    }
}

type AdminResult = std::result::Result<(), AdminError>;

/// A librdkafka handle destroyed when dropped.
struct Guard<T> {
    ptr: *mut T,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: ptr came from the matching constructor and is destroyed only here.
            unsafe { (self.destroy)(self.ptr) }
        }
    }
}

fn cstring(s: &str) -> std::result::Result<CString, AdminError> {
    CString::new(s).map_err(|_| AdminError::local(format!("{s:?} contains a NUL byte")))
}

/// SAFETY: `p` is null or a NUL-terminated string alive for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: see above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn check(code: rd::rd_kafka_resp_err_t, errstr: &[c_char], what: &str) -> AdminResult {
    if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    // SAFETY: librdkafka NUL-terminates errstr within its size.
    let detail = unsafe { text(errstr.as_ptr()) };
    Err(AdminError::local(format!("{what}: {}", if detail.is_empty() { describe_code(code.into()) } else { detail })))
}

/// The broker's (or librdkafka's) answer for one resource.
fn resource_error(code: RDKafkaErrorCode, message: String) -> AdminResult {
    if code == RDKafkaErrorCode::NoError {
        return Ok(());
    }
    let message = if message.is_empty() { describe_code(code) } else { format!("{message} ({})", code_name(code)) };
    Err(AdminError { message, unreachable: is_unreachable(code) })
}

/// Runs one admin request: options for `op` (timeouts, validate_only), `send` queues it on a
/// private queue, then waits for the result event and hands it to `read`.
fn request<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    validate_only: bool,
    send: impl FnOnce(*mut rd::rd_kafka_t, *const rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> AdminResult,
) -> AdminResult {
    let rk = client.native_ptr();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128 - 1000) as i32;
    let mut errstr = [0 as c_char; 512];
    // SAFETY: rk is live while `client` is borrowed; every handle is owned by a Guard.
    unsafe {
        let options = Guard { ptr: rd::rd_kafka_AdminOptions_new(rk, op), destroy: rd::rd_kafka_AdminOptions_destroy };
        check(rd::rd_kafka_AdminOptions_set_request_timeout(options.ptr, ms, errstr.as_mut_ptr(), errstr.len()), &errstr, "timeout")?;
        if op == rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS {
            check(rd::rd_kafka_AdminOptions_set_operation_timeout(options.ptr, ms, errstr.as_mut_ptr(), errstr.len()), &errstr, "timeout")?;
        }
        if validate_only {
            check(rd::rd_kafka_AdminOptions_set_validate_only(options.ptr, 1, errstr.as_mut_ptr(), errstr.len()), &errstr, "validate_only")?;
        }
        let queue = Guard { ptr: rd::rd_kafka_queue_new(rk), destroy: rd::rd_kafka_queue_destroy };
        send(rk, options.ptr, queue.ptr);
        let event = Guard { ptr: rd::rd_kafka_queue_poll(queue.ptr, ms + 1000), destroy: rd::rd_kafka_event_destroy };
        if event.ptr.is_null() {
            return Err(AdminError { message: "no answer in time".into(), unreachable: true });
        }
        let code: RDKafkaErrorCode = rd::rd_kafka_event_error(event.ptr).into();
        if code != RDKafkaErrorCode::NoError {
            let message = format!("{} ({})", text(rd::rd_kafka_event_error_string(event.ptr)), code_name(code));
            return Err(AdminError { message, unreachable: is_unreachable(code) });
        }
        read(event.ptr)
    }
}

/// Alters one topic's configs with IncrementalAlterConfigs or AlterConfigs.
pub fn alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[(String, Op, Option<String>)],
    api: Api,
    validate_only: bool,
    timeout: Duration,
) -> AdminResult {
    let name = cstring(topic)?;
    let mut owned = Vec::with_capacity(ops.len());
    for (k, op, v) in ops {
        owned.push((cstring(k)?, *op, v.as_deref().map(cstring).transpose()?));
    }
    // SAFETY: name outlives the call (librdkafka copies it).
    let resource = Guard {
        ptr: unsafe { rd::rd_kafka_ConfigResource_new(rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr()) },
        destroy: rd::rd_kafka_ConfigResource_destroy,
    };
    for (k, op, v) in &owned {
        let value = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        match api {
            Api::Incremental => {
                // SAFETY: resource is live; k and value outlive the call.
                let err = unsafe { rd::rd_kafka_ConfigResource_add_incremental_config(resource.ptr, k.as_ptr(), op.native(), value) };
                if !err.is_null() {
                    let err = Guard { ptr: err, destroy: rd::rd_kafka_error_destroy };
                    // SAFETY: err is live until the guard drops.
                    return Err(AdminError::local(unsafe { text(rd::rd_kafka_error_string(err.ptr)) }));
                }
            }
            Api::Replace => {
                // SAFETY: as above.
                let code = unsafe { rd::rd_kafka_ConfigResource_set_config(resource.ptr, k.as_ptr(), value) };
                check(code, &[0], &format!("cannot set {}", k.to_string_lossy()))?;
            }
        }
    }
    let (op, is_incremental) = match api {
        Api::Incremental => (rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS, true),
        Api::Replace => (rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONFIGS, false),
    };
    let mut resources = [resource.ptr];
    request(
        client,
        op,
        timeout,
        validate_only,
        // SAFETY (both closures): the handles are live for the call; librdkafka copies the resources.
        |rk, options, queue| unsafe {
            if is_incremental {
                rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue)
            } else {
                rd::rd_kafka_AlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue)
            }
        },
        |event| unsafe {
            let mut count = 0usize;
            let results = if is_incremental {
                let r = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
                if r.is_null() {
                    return Err(AdminError::local("unexpected admin result".into()));
                }
                rd::rd_kafka_IncrementalAlterConfigs_result_resources(r, &mut count)
            } else {
                let r = rd::rd_kafka_event_AlterConfigs_result(event);
                if r.is_null() {
                    return Err(AdminError::local("unexpected admin result".into()));
                }
                rd::rd_kafka_AlterConfigs_result_resources(r, &mut count)
            };
            for i in 0..count {
                let res = *results.add(i);
                resource_error(rd::rd_kafka_ConfigResource_error(res).into(), text(rd::rd_kafka_ConfigResource_error_string(res)))?;
            }
            Ok(())
        },
    )
}

/// What a new topic looks like.
pub struct NewTopic<'a> {
    pub name: &'a str,
    /// -1: the broker's default (ignored with an assignment).
    pub partitions: i32,
    /// -1: the broker's default (ignored with an assignment).
    pub replicas: i32,
    /// Broker ids per partition, if given by hand.
    pub assignment: Option<&'a [Vec<i32>]>,
    pub configs: &'a [(String, String)],
}

/// CreateTopics for one topic, with the broker's error message.
pub fn create_topic<C: ClientContext>(client: &Client<C>, t: &NewTopic<'_>, validate_only: bool, timeout: Duration) -> AdminResult {
    let name = cstring(t.name)?;
    let mut errstr = [0 as c_char; 512];
    let (partitions, replicas) = match t.assignment {
        Some(a) => (a.len() as i32, -1),
        None => (t.partitions, t.replicas),
    };
    // SAFETY: name outlives the call; the new topic is owned by the guard.
    let topic = Guard {
        ptr: unsafe { rd::rd_kafka_NewTopic_new(name.as_ptr(), partitions, replicas, errstr.as_mut_ptr(), errstr.len()) },
        destroy: rd::rd_kafka_NewTopic_destroy,
    };
    if topic.ptr.is_null() {
        // SAFETY: librdkafka NUL-terminates errstr.
        return Err(AdminError::local(unsafe { text(errstr.as_ptr()) }));
    }
    for (k, v) in t.configs {
        let (k, v) = (cstring(k)?, cstring(v)?);
        // SAFETY: topic is live; k and v outlive the call.
        let code = unsafe { rd::rd_kafka_NewTopic_set_config(topic.ptr, k.as_ptr(), v.as_ptr()) };
        check(code, &[0], &format!("config {}", k.to_string_lossy()))?;
    }
    for (p, brokers) in t.assignment.unwrap_or_default().iter().enumerate() {
        let mut ids = brokers.clone();
        // SAFETY: topic is live; ids outlives the call (copied).
        let code = unsafe {
            rd::rd_kafka_NewTopic_set_replica_assignment(topic.ptr, p as i32, ids.as_mut_ptr(), ids.len(), errstr.as_mut_ptr(), errstr.len())
        };
        check(code, &errstr, "replica assignment")?;
    }
    let mut topics = [topic.ptr];
    request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
        timeout,
        validate_only,
        // SAFETY (both closures): the handles are live for the call.
        |rk, options, queue| unsafe { rd::rd_kafka_CreateTopics(rk, topics.as_mut_ptr(), 1, options, queue) },
        |event| unsafe {
            let r = rd::rd_kafka_event_CreateTopics_result(event);
            if r.is_null() {
                return Err(AdminError::local("unexpected admin result".into()));
            }
            let mut count = 0usize;
            let results = rd::rd_kafka_CreateTopics_result_topics(r, &mut count);
            for i in 0..count {
                let res = *results.add(i);
                resource_error(rd::rd_kafka_topic_result_error(res).into(), text(rd::rd_kafka_topic_result_error_string(res)))?;
            }
            Ok(())
        },
    )
}

/// The current controller's broker id as the cluster's metadata reports it; None if unknown.
pub fn controller_id<C: ClientContext>(client: &Client<C>, timeout: Duration) -> Option<i32> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: the client handle is live while `client` is borrowed.
    let id = unsafe { rd::rd_kafka_controllerid(client.native_ptr(), ms) };
    (id >= 0).then_some(id)
}
