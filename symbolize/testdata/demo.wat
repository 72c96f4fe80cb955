(module $demo_mod
  (import "env" "tick" (func $host_tick (param i32) (result i32)))
  (func $chain_a (export "chain_a") (param i32) (result i32)
    local.get 0
    call $chain_b
    i32.const 1
    i32.add)
  (func $chain_b (param i32) (result i32)
    local.get 0
    call $chain_c
    i32.const 2
    i32.add)
  (func $chain_c (param i32) (result i32)
    (local i32)
    loop $l
      local.get 1
      i32.const 1
      i32.add
      local.set 1
      local.get 1
      local.get 0
      i32.lt_u
      br_if $l
    end
    local.get 1
    call $host_tick
    call 4)
  (func (param i32) (result i32)
    local.get 0
    i32.const 3
    i32.mul)
  (func $"weird;name\nwith space ü" (export "weird") (param i32) (result i32)
    local.get 0
    call $chain_b)
  (func $a_very_long_function_name_that_goes_on_and_on_beyond_the_ninety_six_character_limit_of_wasmtime_symbols_end (export "long") (param i32) (result i32)
    local.get 0
    i32.const 7
    i32.xor)
)
