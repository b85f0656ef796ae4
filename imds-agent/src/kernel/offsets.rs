//! Kernel struct offsets for the connect hook, resolved from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). aya-ebpf programs written in Rust cannot carry CO-RE
//! relocations, so user space does the relocation once and hands the numbers to the
//! programs as a read-only global. If any field is missing the agent still runs; it then
//! falls back to /proc for parent pid, argv and executable path.

use btf_rs::{Btf, BtfType, Type};
use imds_agent_common::KernelOffsets;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("reading kernel BTF from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct {name}")]
    NoStruct { name: String },
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("kernel BTF: field {field} of struct {strukt} is a bitfield or misaligned")]
    Unaligned { strukt: String, field: String },
}

/// Resolves every offset the connect hook uses.
pub fn resolve(btf: &Btf) -> Result<KernelOffsets, OffsetsError> {
    let o = |s: &str, path: &str| field_offset(btf, s, path);
    Ok(KernelOffsets {
        valid: 1,
        task_tgid: o("task_struct", "tgid")?,
        task_real_parent: o("task_struct", "real_parent")?,
        task_group_leader: o("task_struct", "group_leader")?,
        task_start_boottime: o("task_struct", "start_boottime")?,
        task_comm: o("task_struct", "comm")?,
        task_mm: o("task_struct", "mm")?,
        mm_arg_start: o("mm_struct", "arg_start")?,
        mm_arg_end: o("mm_struct", "arg_end")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        file_f_path_dentry: o("file", "f_path.dentry")?,
        dentry_d_parent: o("dentry", "d_parent")?,
        dentry_d_name_name: o("dentry", "d_name.name")?,
        file_f_path_mnt: o("file", "f_path.mnt")?,
        vfsmount_mnt_root: o("vfsmount", "mnt_root")?,
        mount_mnt: o("mount", "mnt")?,
        mount_mnt_parent: o("mount", "mnt_parent")?,
        mount_mnt_mountpoint: o("mount", "mnt_mountpoint")?,
        task_cgroups: o("task_struct", "cgroups")?,
        css_set_dfl_cgrp: o("css_set", "dfl_cgrp")?,
        cgroup_kn: o("cgroup", "kn")?,
        kernfs_node_id: o("kernfs_node", "id")?,
        mm_env_start: o("mm_struct", "env_start")?,
        mm_env_end: o("mm_struct", "env_end")?,
        env_allow: [0; imds_agent_common::ENV_ALLOW_MAX],
    })
}

/// Loads the running kernel's BTF and resolves the offsets.
pub fn from_running_kernel() -> Result<KernelOffsets, OffsetsError> {
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|source| OffsetsError::Read {
        path: VMLINUX_BTF.to_owned(),
        source,
    })?;
    resolve(&btf)
}

/// Byte offset of a dotted field path (`"f_path.dentry"`) inside struct `strukt`, looking
/// through anonymous structs and unions as C does.
pub fn field_offset(btf: &Btf, strukt: &str, path: &str) -> Result<u32, OffsetsError> {
    let mut current = find_struct(btf, strukt)?;
    let mut bits = 0u32;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (member_bits, type_id) =
            find_member(btf, &current, part).ok_or_else(|| OffsetsError::NoField {
                strukt: strukt.to_owned(),
                field: path.to_owned(),
            })?;
        bits += member_bits;
        if parts.peek().is_some() {
            current = resolve_struct(btf, type_id).ok_or_else(|| OffsetsError::NoField {
                strukt: strukt.to_owned(),
                field: path.to_owned(),
            })?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(OffsetsError::Unaligned {
            strukt: strukt.to_owned(),
            field: path.to_owned(),
        });
    }
    Ok(bits / 8)
}

fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, OffsetsError> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|_| OffsetsError::NoStruct {
            name: name.to_owned(),
        })?;
    types
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| OffsetsError::NoStruct {
            name: name.to_owned(),
        })
}

/// Follows typedefs and qualifiers to a struct or union.
fn resolve_struct(btf: &Btf, mut id: u32) -> Option<btf_rs::Struct> {
    for _ in 0..16 {
        match btf.resolve_type_by_id(id).ok()? {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            t @ (Type::Typedef(_)
            | Type::Const(_)
            | Type::Volatile(_)
            | Type::Restrict(_)
            | Type::TypeTag(_)) => id = t.as_btf_type()?.get_type_id()?,
            _ => return None,
        }
    }
    None
}

/// Bit offset and type id of member `name`, searching anonymous members recursively.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, u32)> {
    for m in &s.members {
        let member_name = btf.resolve_name(m).unwrap_or_default();
        if member_name == name {
            return Some((m.bit_offset(), m.get_type_id()?));
        }
        if member_name.is_empty()
            && let Some(inner) = m.get_type_id().and_then(|id| resolve_struct(btf, id))
            && let Some((bits, id)) = find_member(btf, &inner, name)
        {
            return Some((m.bit_offset() + bits, id));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against the BTF of the machine running the tests; every Linux with BTF has
    /// these fields.
    #[test]
    fn resolves_running_kernel() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            assert!(std::env::var("CI").is_err(), "CI machine has no kernel BTF");
            return;
        }
        let off = from_running_kernel().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.valid, 1);
        // Plausibility: these are deep inside task_struct / mm_struct, never 0.
        assert!(off.task_tgid > 0 && off.task_mm > 0 && off.mm_arg_end > off.mm_arg_start);
        assert_eq!(off.mm_arg_end - off.mm_arg_start, 8);
        // qstr.name follows the 8-byte hash_len.
        let btf = Btf::from_file(VMLINUX_BTF).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(field_offset(&btf, "qstr", "name").unwrap_or_else(|e| panic!("{e}")), 8);
        assert!(field_offset(&btf, "task_struct", "no_such_field").is_err());
    }
}
