# Recording stubs for the Vivado and Vitis HLS Tcl commands our generated scripts use, so the
# scripts run under plain tclsh. Each call is written, one per line, to the record file:
#   tclsh vendor_stubs.tcl RECORD_FILE SCRIPT.tcl
# A command we did not stub is recorded as "UNKNOWN <command>" (tests require none). Queries
# answer with what a successful tool would; nothing here pretends to build anything.
set record [open [lindex $argv 0] w]
proc rec {args} { puts $::record [join $args " "]; flush $::record }

set vivado_cmds {
    create_project set_property update_ip_catalog create_bd_design create_bd_cell apply_bd_automation
    connect_bd_intf_net connect_bd_net assign_bd_address validate_bd_design save_bd_design make_wrapper
    add_files launch_runs wait_on_run open_run report_utilization report_timing_summary
}
set hls_cmds {
    open_project set_top open_solution set_part create_clock config_export
    csim_design csynth_design cosim_design export_design
}
foreach cmd [concat $vivado_cmds $hls_cmds] {
    proc $cmd {args} "rec $cmd {*}\$args; return {}"
}
# queries: return the object asked for, as the tools do
foreach cmd {get_bd_cells get_bd_intf_pins get_bd_pins get_bd_addr_segs get_runs get_files} {
    proc $cmd {args} "rec $cmd {*}\$args; return \[lindex \$args end\]"
}
# board parts installed: every one asked for, or only those listed in $STUB_BOARD_PARTS when it is set
proc get_board_parts {args} {
    rec get_board_parts {*}$args
    if {![info exists ::env(STUB_BOARD_PARTS)]} { return [lindex $args end] }
    return [lsearch -all -inline -glob $::env(STUB_BOARD_PARTS) [lindex $args end]]
}
proc current_project {} { return stub_project }
proc current_fileset {} { return sources_1 }
proc get_ipdefs {args} { rec get_ipdefs {*}$args; return [string map {* 3.5} [lindex $args end]] }
proc get_property {name obj} {
    rec get_property $name $obj
    switch -- $name {
        PROGRESS { return 100% }
        STATUS { return {write_bitstream Complete!} }
        DIRECTORY { return /stub/runs/$obj }
        default { return {} }
    }
}
# file copy/mkdir would touch tool outputs that do not exist here: record them instead
rename file _tcl_file
proc file {sub args} {
    if {$sub in {copy mkdir delete}} { rec file $sub {*}$args; return {} }
    return [_tcl_file $sub {*}$args]
}
rename cd _tcl_cd
proc cd {dir} { rec cd $dir }
rename exit _tcl_exit
proc exit {{code 0}} { rec exit $code; close $::record; _tcl_exit $code }
proc unknown {args} { rec UNKNOWN {*}$args; return {} }

source [lindex $argv 1]
rec END_OF_SCRIPT
close $record
