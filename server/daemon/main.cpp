#include "daemon/daemon.hpp"

int main(int argc, char** argv) { return shoal::shoald_main(argc, argv); }
