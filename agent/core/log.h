// Logging to stderr, one line per event: "<level> <component>: <message>". printf-style so the
// hot paths that log (rarely) do not pull in iostreams.
#pragma once

#include <cstdarg>

namespace np::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void setLevel(Level level);
Level level();
void write(Level level, const char* component, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace np::log

#define NP_LOG_DEBUG(comp, ...) ::np::log::write(::np::log::Level::Debug, comp, __VA_ARGS__)
#define NP_LOG_INFO(comp, ...) ::np::log::write(::np::log::Level::Info, comp, __VA_ARGS__)
#define NP_LOG_WARN(comp, ...) ::np::log::write(::np::log::Level::Warn, comp, __VA_ARGS__)
#define NP_LOG_ERROR(comp, ...) ::np::log::write(::np::log::Level::Error, comp, __VA_ARGS__)
