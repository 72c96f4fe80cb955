// Package wasmtime is the part of wasmtime-go v37 that the test target
// (../../main.go) uses, under one import path for every version.
package wasmtime

import w "github.com/bytecodealliance/wasmtime-go/v37"

type (
	Caller   = w.Caller
	Engine   = w.Engine
	Func     = w.Func
	Instance = w.Instance
	Linker   = w.Linker
	Module   = w.Module
	Store    = w.Store
	Trap     = w.Trap
)

var (
	NewEngine                = w.NewEngine
	NewInstance              = w.NewInstance
	NewLinker                = w.NewLinker
	NewModule                = w.NewModule
	NewModuleDeserialize     = w.NewModuleDeserialize     // (*Module).Serialize's bytes, copied into memory
	NewModuleDeserializeFile = w.NewModuleDeserializeFile // a .cwasm file, mapped
	NewStore                 = w.NewStore
	NewTrap                  = w.NewTrap
	Wat2Wasm                 = w.Wat2Wasm
)

// Free releases a store and a module now, as a host that unloads a
// tenant's module does: the module's code is unmapped once nothing uses it.
func Free(s *Store, m *Module) {
	s.Close()
	m.Close()
}
