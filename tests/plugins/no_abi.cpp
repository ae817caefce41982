// no_abi: a shared library with one exported function and no SHARDLINE_PLUGIN, hence no
// shardline_abi section. The host must refuse it before dlopen: "not a Shardline plugin".
extern "C" __attribute__((visibility("default"))) int shardline_test_answer() { return 42; }
