//! Topic config changes through librdkafka's admin API: IncrementalAlterConfigs (SET, DELETE,
//! APPEND, SUBTRACT) and the older AlterConfigs. rust-rdkafka wraps only the older call and
//! drops the broker's error message, so both go through librdkafka's C API here; every pointer
//! made in this module is destroyed in it.

use crate::error::{describe_code, failed, is_unreachable};
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

/// Which API carries the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// IncrementalAlterConfigs: only the keys named change.
    Incremental,
    /// AlterConfigs: the topic's overrides become exactly the SET entries given.
    Replace,
}

/// An error of the whole call: `unreachable` when no broker answered.
#[derive(Debug)]
pub struct AlterError {
    pub message: String,
    pub unreachable: bool,
}

/// Alters one topic's configs; waits at most `timeout` (plus a second for the reply).
pub fn alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[(String, Op, Option<String>)],
    api: Api,
    validate_only: bool,
    timeout: Duration,
) -> std::result::Result<(), AlterError> {
    let cstr = |s: &str| CString::new(s).map_err(|_| local(format!("{s:?} contains a NUL byte")));
    let name = cstr(topic)?;
    let mut owned = Vec::with_capacity(ops.len());
    for (k, op, v) in ops {
        owned.push((cstr(k)?, *op, v.as_deref().map(cstr).transpose()?));
    }
    let timeout_ms = timeout.as_millis().clamp(1, i32::MAX as u128 - 1000) as i32;
    let rk = client.native_ptr();
    // SAFETY: every handle below is created here, used only while alive, and destroyed once
    // on every path; strings outlive the calls that read them (librdkafka copies them).
    unsafe {
        let resource = rd::rd_kafka_ConfigResource_new(rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr());
        let added = add_configs(resource, &owned, api);
        if let Err(e) = added {
            rd::rd_kafka_ConfigResource_destroy(resource);
            return Err(e);
        }
        let for_api = match api {
            Api::Incremental => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            Api::Replace => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONFIGS,
        };
        let options = rd::rd_kafka_AdminOptions_new(rk, for_api);
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        rd::rd_kafka_AdminOptions_set_validate_only(options, i32::from(validate_only), errstr.as_mut_ptr(), errstr.len());
        let queue = rd::rd_kafka_queue_new(rk);
        let mut resources = [resource];
        match api {
            Api::Incremental => rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue),
            Api::Replace => rd::rd_kafka_AlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue),
        }
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms + 1000);
        let outcome = read_result(event, api);
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_ConfigResource_destroy(resource);
        outcome
    }
}

fn local(message: String) -> AlterError {
    AlterError { message, unreachable: false }
}

unsafe fn add_configs(
    resource: *mut rd::rd_kafka_ConfigResource_t,
    ops: &[(CString, Op, Option<CString>)],
    api: Api,
) -> std::result::Result<(), AlterError> {
    for (k, op, v) in ops {
        let value = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        match api {
            Api::Incremental => {
                // SAFETY: resource is live; k and value outlive the call.
                let err = unsafe { rd::rd_kafka_ConfigResource_add_incremental_config(resource, k.as_ptr(), op.native(), value) };
                if !err.is_null() {
                    // SAFETY: err is a live error handle, destroyed once.
                    let msg = unsafe { text(rd::rd_kafka_error_string(err)) };
                    unsafe { rd::rd_kafka_error_destroy(err) };
                    return Err(local(msg));
                }
            }
            Api::Replace => {
                // SAFETY: as above.
                let code = unsafe { rd::rd_kafka_ConfigResource_set_config(resource, k.as_ptr(), value) };
                if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Err(local(format!("cannot set {}: {}", k.to_string_lossy(), describe_code(code.into()))));
                }
            }
        }
    }
    Ok(())
}

unsafe fn read_result(event: *mut rd::rd_kafka_event_t, api: Api) -> std::result::Result<(), AlterError> {
    if event.is_null() {
        return Err(AlterError { message: "no answer in time".into(), unreachable: true });
    }
    // SAFETY: event is a live event handle; the result and resources it points to live as long.
    unsafe {
        let code: RDKafkaErrorCode = rd::rd_kafka_event_error(event).into();
        if code != RDKafkaErrorCode::NoError {
            let message = format!("{} ({})", text(rd::rd_kafka_event_error_string(event)), crate::error::code_name(code));
            return Err(AlterError { message, unreachable: is_unreachable(code) });
        }
        let mut count = 0usize;
        let results = match api {
            Api::Incremental => {
                let r = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
                if r.is_null() {
                    return Err(local("unexpected admin result".into()));
                }
                rd::rd_kafka_IncrementalAlterConfigs_result_resources(r, &mut count)
            }
            Api::Replace => {
                let r = rd::rd_kafka_event_AlterConfigs_result(event);
                if r.is_null() {
                    return Err(local("unexpected admin result".into()));
                }
                rd::rd_kafka_AlterConfigs_result_resources(r, &mut count)
            }
        };
        for i in 0..count {
            let res = *results.add(i);
            let code: RDKafkaErrorCode = rd::rd_kafka_ConfigResource_error(res).into();
            if code != RDKafkaErrorCode::NoError {
                let broker = text(rd::rd_kafka_ConfigResource_error_string(res));
                let message = if broker.is_empty() { describe_code(code) } else { format!("{broker} ({})", crate::error::code_name(code)) };
                return Err(AlterError { message, unreachable: is_unreachable(code) });
            }
        }
        Ok(())
    }
}

/// SAFETY: `p` is null or a NUL-terminated string that lives for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: see above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The current controller's broker id as the cluster's metadata reports it; None if unknown.
pub fn controller_id<C: ClientContext>(client: &Client<C>, timeout: Duration) -> Option<i32> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: the client handle is live while `client` is borrowed.
    let id = unsafe { rd::rd_kafka_controllerid(client.native_ptr(), ms) };
    (id >= 0).then_some(id)
}

/// A result for callers that only need the CLI error.
pub fn into_cli(e: AlterError, what: &str) -> crate::error::CliError {
    if e.unreachable {
        crate::error::CliError::Unreachable(format!("{what}: {}", e.message))
    } else {
        failed(format!("{what}: {}", e.message))
    }
}
