(component $wasmtrace_component
  (component $lib
    (core module $lib_core
      (global $acc (mut i64) (i64.const 1))
      (func $l_work (export "work") (result i64)
        call $l_leaf
        i64.const 17
        i64.add)
      (func $l_leaf (result i64)
        (local $i i32) (local $x i64)
        (local.set $x (global.get $acc))
        (local.set $i (i32.const 35000000))
        (loop $spin
          (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                                 (i64.const 1442695040888963407)))
          (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
          (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
        (global.get $acc)))
    (core instance $li (instantiate $lib_core))
    (func (export "work") (result u64) (canon lift (core func $li "work")))
  )
  (core module $main
    (import "lib" "work" (func $lib_work (result i64)))
    (global $acc (mut i64) (i64.const 1))
    (func $c_run (export "run") (result i64)
      call $c_mid
      global.get $acc
      i64.add)
    (func $c_mid (result i64)
      call $c_leaf
      i64.const 3
      i64.add)
    (func $c_leaf (result i64)
      (local $i i32) (local $x i64)
      (local.set $x (global.get $acc))
      (local.set $i (i32.const 35000000))
      (loop $spin
        (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                               (i64.const 1442695040888963407)))
        (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get $x) (i64.const 29))))
        (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
      (global.get $acc))
    (func $c_via_lib (export "via_lib") (result i64)
      call $c_call_lib
      global.get $acc
      i64.add)
    (func $c_call_lib (result i64)
      call $lib_work
      i64.const 5
      i64.add))
  (instance $lib_inst (instantiate $lib))
  (core func $work_lowered (canon lower (func $lib_inst "work")))
  (core instance $imports (export "work" (func $work_lowered)))
  (core instance $m (instantiate $main (with "lib" (instance $imports))))
  (func (export "run") (result u64) (canon lift (core func $m "run")))
  (func (export "via-lib") (result u64) (canon lift (core func $m "via_lib")))
)
