package api

// The generated Go of the protobuf definitions is committed. protoc comes from Debian
// (protobuf-compiler), its plugins are tools of go.mod, so generation is reproducible.
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. workload/v1/workload.proto ca/v1/ca.proto"
