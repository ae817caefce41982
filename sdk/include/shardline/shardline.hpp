// shardline/shardline.hpp — everything a plugin author needs, in one include.
#pragma once

#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>
#include <shardline/bytes.hpp>
#include <shardline/key.hpp>
#include <shardline/plugin.hpp>
#include <shardline/type_desc.hpp>
