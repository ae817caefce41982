// no_entry: a correct ABI record, written by hand, but no shardline_plugin_manifest entry
// point. The host accepts the record, loads the library, and then refuses it.
#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>

extern "C" SHARDLINE_API __attribute__((used, section("shardline_abi")))
const shardline::AbiRecord shardline_abi_record = shardline::kAbiRecord;

extern "C" SHARDLINE_API int shardline_test_not_an_entry_point() { return 7; }
