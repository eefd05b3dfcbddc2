// The one translation unit that compiles Asio's implementation
// (BOOST_ASIO_SEPARATE_COMPILATION): keeps every other file's build short.
#include <boost/asio/impl/src.hpp>
