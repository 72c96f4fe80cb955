// Package wasmtime is the part of wasmtime-go v37 that the guest host
// (../../main.go) uses, under one import path for every version.
package wasmtime

import w "github.com/bytecodealliance/wasmtime-go/v37"

// Major is the wasmtime-go major version (it names compiled-module caches).
const Major = "v37"

type (
	Caller     = w.Caller
	Engine     = w.Engine
	Func       = w.Func
	Instance   = w.Instance
	Linker     = w.Linker
	Memory     = w.Memory
	Module     = w.Module
	Store      = w.Store
	Trap       = w.Trap
	Val        = w.Val
	WasiConfig = w.WasiConfig
)

var (
	NewEngine            = w.NewEngine
	NewLinker            = w.NewLinker
	NewModule            = w.NewModule
	NewModuleDeserialize = w.NewModuleDeserialize
	NewStore             = w.NewStore
	NewTrap              = w.NewTrap
	NewWasiConfig        = w.NewWasiConfig
	ValI32               = w.ValI32
)
